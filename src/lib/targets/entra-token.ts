/**
 * An Entra ID access token for one scope, from a `TokenCredential` (@azure/identity), cached
 * until shortly before it expires. Both the http target (bearer token for an API) and the
 * postgres target (the token is the password of Azure Database for PostgreSQL) use it.
 *
 * - Refreshed `marginMs` (default 5 minutes) before `expiresOnTimestamp`, or at the
 *   credential's own `refreshAfterTimestamp` when it gives one, whichever comes first.
 * - Concurrent callers share one refresh (a burst of requests asks the credential once).
 * - A failure to get a token is a TransientError that names the scope, never the token.
 */
import type { AccessToken, TokenCredential } from '@azure/identity';
import { TransientError } from '../errors';

export interface EntraTokenOptions {
  /** Refresh this long before expiry. Default 5 minutes. */
  marginMs?: number;
  /** The clock (tests). */
  now?: () => number;
}

export class EntraToken {
  private cached?: { token: string; refreshAt: number };
  private pending?: Promise<string>;
  private readonly marginMs: number;
  private readonly now: () => number;

  constructor(
    private readonly credential: TokenCredential,
    readonly scope: string,
    o: EntraTokenOptions = {},
  ) {
    this.marginMs = o.marginMs ?? 5 * 60_000;
    this.now = o.now ?? Date.now;
  }

  /** The current token; asks the credential only when none is cached or it is due for refresh. */
  async get(): Promise<string> {
    if (this.cached && this.now() < this.cached.refreshAt) return this.cached.token;
    this.pending ??= this.fetch().finally(() => (this.pending = undefined));
    return this.pending;
  }

  /** Forgets the cached token (after the server refused it), so the next get() asks again. */
  invalidate(token?: string): void {
    if (token === undefined || this.cached?.token === token) this.cached = undefined;
  }

  /** The cached token, if any (to scrub it from text that may reach a log). */
  current(): string | undefined {
    return this.cached?.token;
  }

  private async fetch(): Promise<string> {
    let t: AccessToken | null;
    try {
      t = await this.credential.getToken(this.scope);
    } catch (e) {
      throw new TransientError(
        `could not get an Entra ID token for ${this.scope}: ${e instanceof Error ? e.message : String(e)}; ` +
          "check the app's managed identity (or the developer's Azure login)",
        { code: 'token_unavailable', cause: e },
      );
    }
    if (!t?.token)
      throw new TransientError(`the credential returned no token for ${this.scope}`, {
        code: 'token_unavailable',
      });
    const byExpiry = t.expiresOnTimestamp - this.marginMs;
    const refreshAt =
      t.refreshAfterTimestamp !== undefined ? Math.min(byExpiry, t.refreshAfterTimestamp) : byExpiry;
    this.cached = { token: t.token, refreshAt };
    return t.token;
  }
}
