/**
 * One error type for every way a ChangeNow call can fail, already classified: `transient` means "the same request
 * may succeed later" (the calling job retries with its own backoff), `permanent` means "retrying the same request is
 * pointless" (the job records the failure and stops). The client itself never retries.
 *
 * | cause                                                   | kind      | code                      |
 * |---------------------------------------------------------|-----------|---------------------------|
 * | network error (ECONNREFUSED, ECONNRESET, ENOTFOUND, …)  | transient | 'network'                 |
 * | connect or total response deadline exceeded             | transient | 'timeout'                 |
 * | HTTP 408                                                | transient | 'timeout'                 |
 * | HTTP 429                                                | transient | 'http_429'                |
 * | HTTP 5xx                                                | transient | 'http_<status>'           |
 * | 2xx whose body is not JSON or does not match the schema | transient | 'malformed_response'      |
 * | HTTP 401 / 403                                          | permanent | 'unauthorized'            |
 * | HTTP 400 / 404 / 422 with a `{ error, message }` body   | permanent | the `error` field         |
 * | any other 4xx (or those three without such a body)      | permanent | 'http_<status>'           |
 * | HTTP 1xx / 3xx (we never follow redirects)              | permanent | 'http_<status>'           |
 * | request refused before sending (bad amount text, …)     | permanent | 'invalid_request'         |
 */

export type ChangeNowEndpoint = 'estimate' | 'create' | 'by-id' | 'list';
export type ChangeNowErrorKind = 'transient' | 'permanent';

export interface ChangeNowErrorInit {
  kind: ChangeNowErrorKind;
  code: string;
  httpStatus: number | null;
  endpoint: ChangeNowEndpoint;
  /** Human-readable detail; prefixed with the endpoint. Must already be free of secrets. */
  detail: string;
  cause?: unknown;
}

export class ChangeNowError extends Error {
  override name = 'ChangeNowError';
  readonly kind: ChangeNowErrorKind;
  readonly code: string;
  readonly httpStatus: number | null;
  readonly endpoint: ChangeNowEndpoint;

  constructor(init: ChangeNowErrorInit) {
    super(`ChangeNow ${init.endpoint}: ${init.detail}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.kind = init.kind;
    this.code = init.code;
    this.httpStatus = init.httpStatus;
    this.endpoint = init.endpoint;
  }

  get transient(): boolean {
    return this.kind === 'transient';
  }
}

export function isChangeNowError(value: unknown): value is ChangeNowError {
  return value instanceof ChangeNowError;
}

/** Statuses whose `{ error, message }` body names the reason: the `error` field becomes the code. */
const REASONED_STATUSES = new Set([400, 404, 422]);
/** What a ChangeNow `error` field looks like (`pair_is_inactive`, `deposit_too_small`, …). */
const ERROR_CODE_RE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/** The parts of a non-2xx body we read, if it was a `{ error, message }` JSON object. */
export interface ErrorBody {
  error: string | null;
  message: string | null;
}

/** Classifies a non-2xx HTTP answer. `body` is null when the body was not a `{ error, message }` object. */
export function errorFromHttpStatus(
  endpoint: ChangeNowEndpoint,
  status: number,
  body: ErrorBody | null,
): ChangeNowError {
  const said = describeBody(body);
  const base = { endpoint, httpStatus: status };
  if (status === 401 || status === 403) {
    return new ChangeNowError({
      ...base,
      kind: 'permanent',
      code: 'unauthorized',
      detail: `HTTP ${status} unauthorized${said}`,
    });
  }
  if (status === 408) {
    // A request timeout reported by the server (or a proxy in front of it) is a timeout like ours.
    return new ChangeNowError({
      ...base,
      kind: 'transient',
      code: 'timeout',
      detail: `HTTP 408 request timeout${said}`,
    });
  }
  if (status === 429 || (status >= 500 && status <= 599)) {
    return new ChangeNowError({ ...base, kind: 'transient', code: `http_${status}`, detail: `HTTP ${status}${said}` });
  }
  if (REASONED_STATUSES.has(status) && body?.error != null && ERROR_CODE_RE.test(body.error)) {
    return new ChangeNowError({ ...base, kind: 'permanent', code: body.error, detail: `HTTP ${status}${said}` });
  }
  return new ChangeNowError({ ...base, kind: 'permanent', code: `http_${status}`, detail: `HTTP ${status}${said}` });
}

function describeBody(body: ErrorBody | null): string {
  if (body === null) return '';
  const parts = [body.error, body.message].filter((p): p is string => p !== null && p !== '');
  return parts.length > 0 ? ` (${parts.join(': ')})` : '';
}
