// The dashboard session: an HttpOnly cookie the server sets, so all the page knows is what
// GET /api/session says.
import { ApiError, del, request } from './api';

export interface Session {
  signed_in: boolean;
  principal?: string;
  expires_at?: string;
  loopback_open: boolean;
}

export type Credentials = { token: string } | { access_key_id: string; secret_access_key: string };

export async function fetchSession(): Promise<Session> {
  try {
    return await request<Session>('/api/session', { allowUnauthorized: true });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      const body = (error.body ?? {}) as Partial<Session>;
      return { signed_in: false, loopback_open: Boolean(body.loopback_open) };
    }
    throw error;
  }
}

export function signIn(credentials: Credentials): Promise<Session> {
  return request<Session>('/api/session', {
    method: 'POST',
    body: credentials,
    allowUnauthorized: true,
  });
}

export async function signOut(): Promise<void> {
  try {
    await del('/api/session');
  } catch (error) {
    // Already signed out is the outcome we wanted.
    if (!(error instanceof ApiError && error.status === 401)) throw error;
  }
}
