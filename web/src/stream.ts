// The one WebSocket to /api/stream. Pages subscribe to channels and add listeners; the
// connection comes back with backoff (1 s doubling to 30 s), subscribes again, and tells
// pages to refill from REST, since updates were missed while it was down.

export interface StreamMessage {
  channel: string;
  [key: string]: unknown;
}

type Listener = (message: StreamMessage) => void;

const listeners = new Map<string, Set<Listener>>();
const subscriptionCounts = new Map<string, number>();
const resyncListeners = new Set<() => void>();
let socket: WebSocket | null = null;
let isWanted = false;
let isConnected = false;
let backoffMs = 1000;
let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
let hasConnectedBefore = false;

function send(message: object): void {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message) + '\n');
}

function dispatch(message: StreamMessage): void {
  if (message.channel === 'dropped') {
    // The server skipped updates for us: what is on screen may be stale.
    resyncListeners.forEach((resync) => resync());
    return;
  }
  listeners.get(message.channel)?.forEach((listener) => listener(message));
}

function connect(): void {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}/api/stream`);
  socket = ws;
  ws.onopen = () => {
    isConnected = true;
    backoffMs = 1000;
    const channels = [...subscriptionCounts.keys()];
    if (channels.length) send({ subscribe: channels });
    if (hasConnectedBefore) resyncListeners.forEach((resync) => resync());
    hasConnectedBefore = true;
  };
  ws.onmessage = (event) => {
    if (typeof event.data !== 'string') return;
    // One object per message; tolerate newline-joined batches too.
    for (const line of event.data.split('\n')) {
      if (!line.trim()) continue;
      try {
        const message = JSON.parse(line) as StreamMessage;
        if (message && typeof message.channel === 'string') dispatch(message);
      } catch {
        // A malformed frame is the server's bug; one lost update is not worth a reconnect.
      }
    }
  };
  ws.onclose = () => {
    isConnected = false;
    if (socket === ws) socket = null;
    if (!isWanted) return;
    reconnectTimer = setTimeout(connect, backoffMs);
    backoffMs = Math.min(backoffMs * 2, 30_000);
  };
}

export function startStream(): void {
  if (isWanted) return;
  isWanted = true;
  connect();
}

export function stopStream(): void {
  isWanted = false;
  hasConnectedBefore = false;
  clearTimeout(reconnectTimer);
  socket?.close();
  socket = null;
}

export function isStreamConnected(): boolean {
  return isConnected;
}

// Subscribes to `channels` and calls `listener` with their messages; the returned function
// undoes both. Channels are reference counted so pages can share them.
export function listen(channels: string[], listener: Listener): () => void {
  const added: string[] = [];
  for (const channel of channels) {
    if (!listeners.has(channel)) listeners.set(channel, new Set());
    listeners.get(channel)!.add(listener);
    const count = subscriptionCounts.get(channel) ?? 0;
    subscriptionCounts.set(channel, count + 1);
    if (count === 0) added.push(channel);
  }
  if (added.length) send({ subscribe: added });
  return () => {
    const removed: string[] = [];
    for (const channel of channels) {
      listeners.get(channel)?.delete(listener);
      const count = (subscriptionCounts.get(channel) ?? 1) - 1;
      if (count > 0) {
        subscriptionCounts.set(channel, count);
      } else {
        subscriptionCounts.delete(channel);
        removed.push(channel);
      }
    }
    if (removed.length) send({ unsubscribe: removed });
  };
}

// Listens to a channel the server sends without its own subscription ("presence" comes with
// "fleet", "hello" with every connection).
export function on(channel: string, listener: Listener): () => void {
  if (!listeners.has(channel)) listeners.set(channel, new Set());
  listeners.get(channel)!.add(listener);
  return () => listeners.get(channel)?.delete(listener);
}

// Called after a reconnect or a "dropped" notice: the page should refetch its REST data.
export function onResync(resync: () => void): () => void {
  resyncListeners.add(resync);
  return () => resyncListeners.delete(resync);
}
