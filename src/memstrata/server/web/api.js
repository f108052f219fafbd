// The only network code of the page: calls to this server's /v1 with a bearer key.
// Errors come back as RFC 9457 problem documents; ApiError carries their `detail`.

export class ApiError extends Error {
  constructor(status, detail, problem = null) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
    this.problem = problem;
  }
}

export async function api(path, { method = 'GET', body, key, signal } = {}) {
  if (!path.startsWith('/v1/')) throw new Error(`refusing to call ${path}: the page talks only to /v1`);
  const headers = { Accept: 'application/json, application/problem+json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error', signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError(0, `cannot reach the server (${err && err.message ? err.message : err})`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const detail = data && typeof data.detail === 'string' && data.detail
      ? data.detail
      : `${response.status} ${response.statusText || 'error'}`;
    throw new ApiError(response.status, detail, data);
  }
  return data;
}
