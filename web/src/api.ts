// Same-origin JSON calls (getText for text, such as /metrics). Every service answers errors in
// its own shape (AWS {"message"}, /api/ {"error":{"message"}} or {"error":"..."}); errorMessage
// finds the text in any of them.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown,
  ) {
    super(message);
  }
}

let onUnauthorized: () => void = () => {};

// Set by the router: a 401 anywhere means the session is gone, so show the sign-in page.
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

export function errorMessage(body: unknown, status: number): string {
  if (body && typeof body === 'object') {
    const record = body as Record<string, unknown>;
    const error = record.error;
    if (typeof error === 'string' && error) return error;
    if (error && typeof error === 'object') {
      const nested = error as Record<string, unknown>;
      if (typeof nested.message === 'string') {
        return nested.field ? `${nested.field}: ${nested.message}` : nested.message;
      }
    }
    for (const key of ['message', 'Message', 'errorMessage']) {
      if (typeof record[key] === 'string' && record[key]) return record[key] as string;
    }
  }
  if (typeof body === 'string' && body.trim()) return body.trim();
  return `The server answered ${status}`;
}

interface RequestOptions {
  method?: string;
  body?: unknown;
  // The session calls handle their own 401 (a wrong token is not an expired session).
  allowUnauthorized?: boolean;
}

export async function request<T = unknown>(path: string, options: RequestOptions = {}): Promise<T> {
  const init: RequestInit = {
    method: options.method ?? 'GET',
    credentials: 'same-origin',
    headers: { Accept: 'application/json' },
  };
  if (options.body !== undefined) {
    init.body = JSON.stringify(options.body);
    init.headers = { ...init.headers, 'Content-Type': 'application/json' };
  }
  let response: Response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'Nimbus did not answer (is the server running?)', null);
  }
  const text = await response.text();
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  if (response.ok) return body as T;
  if (response.status === 401 && !options.allowUnauthorized) onUnauthorized();
  throw new ApiError(response.status, errorMessage(body, response.status), body);
}

// A text resource (GET /metrics, Prometheus text), with the same 401 handling as request().
export async function getText(path: string, options: Pick<RequestOptions, 'allowUnauthorized'> = {}): Promise<string> {
  let response: Response;
  try {
    response = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'text/plain' } });
  } catch {
    throw new ApiError(0, 'Nimbus did not answer (is the server running?)', null);
  }
  const text = await response.text();
  if (response.ok) return text;
  if (response.status === 401 && !options.allowUnauthorized) onUnauthorized();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: the text itself is the message.
  }
  throw new ApiError(response.status, errorMessage(body, response.status), body);
}

export const get = <T = unknown>(path: string) => request<T>(path);
export const post = <T = unknown>(path: string, body: unknown = {}) =>
  request<T>(path, { method: 'POST', body });
export const put = <T = unknown>(path: string, body?: unknown) =>
  request<T>(path, { method: 'PUT', body });
export const del = <T = unknown>(path: string) => request<T>(path, { method: 'DELETE' });

export const encode = encodeURIComponent;

export interface Overview {
  version: string;
  region: string;
  account: string;
  listeners: Partial<Record<'mqtt' | 'mqtts' | 'http' | 'https' | 'grpc', string>>;
  paths: { data_dir?: string; ca?: string; credentials?: string; tokens?: string };
  counts: Record<string, number>;
  devices: { database: string; measurement: string; tag: string };
  pubsub_project: string;
}

let overview: Promise<Overview> | null = null;

// The overview rarely changes; pages share one copy until a refresh asks again.
export function getOverview(fresh = false): Promise<Overview> {
  if (!overview || fresh) {
    overview = get<Overview>('/api/overview');
    overview.catch(() => (overview = null));
  }
  return overview;
}
