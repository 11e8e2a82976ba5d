// What the router hands a page: where to draw, the route's parameters, and hooks whose
// registrations end when the user navigates away (stream listeners, timers, resyncs).
import { onResync } from './stream';

export interface PageContext {
  main: HTMLElement;
  params: string[];
  // False once the user has left: async work checks it before touching the DOM.
  isCurrent(): boolean;
  cleanup(undo: () => void): void;
  // `refill` runs after a stream reconnect or a "dropped" notice.
  onResync(refill: () => void): void;
  setTitle(title: string): void;
}

export type PageRender = (context: PageContext) => void | Promise<void>;

export class RouteContext implements PageContext {
  private readonly undos: (() => void)[] = [];
  private isLive = true;

  constructor(
    readonly main: HTMLElement,
    readonly params: string[],
  ) {}

  isCurrent(): boolean {
    return this.isLive;
  }

  cleanup(undo: () => void): void {
    if (this.isLive) this.undos.push(undo);
    else undo();
  }

  onResync(refill: () => void): void {
    this.cleanup(onResync(refill));
  }

  setTitle(title: string): void {
    if (this.isLive) document.title = `${title} — Nimbus`;
  }

  dispose(): void {
    this.isLive = false;
    for (const undo of this.undos.splice(0).reverse()) undo();
  }
}
