// JSON calls to /api/v1/ with the session cookie and CSRF token.

function csrf() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) return meta.content;
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

export class ApiError extends Error {
  constructor(status, body) {
    super(typeof body?.detail === "string" ? body.detail : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

export async function api(method, url, body) {
  const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  if (method !== "GET") opts.headers["X-CSRFToken"] = csrf();
  let res;
  try {
    res = await fetch(url, opts);
  } catch (e) {
    throw new ApiError(0, { detail: "The server cannot be reached. Your work is kept in this browser; try again." });
  }
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

// Flatten DRF error bodies into [["regions[1].latex", "message"], ...].
export function fieldErrors(body) {
  const out = [];
  const walk = (v, key) => {
    if (v == null) return;
    if (Array.isArray(v)) {
      if (v.every((x) => typeof x === "string")) out.push([key, v.join(" ")]);
      else v.forEach((x, i) => walk(x, `${key}[${i}]`));
    } else if (typeof v === "object") {
      for (const [k, x] of Object.entries(v)) walk(x, key ? `${key}.${k}` : k);
    } else out.push([key, String(v)]);
  };
  walk(body, "");
  return out;
}

export async function claimNext() {
  return api("POST", "/api/v1/tasks/next/");
}
