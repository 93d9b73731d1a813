// URLs as they are printed: a URL's user name and password are never shown (an agent's
// --server or the CLI's NAVARCH_SERVER may carry them for a proxy in front of the reconciler).

/** The URL without its credentials, and without a trailing slash; text that is no URL loses anything between // and @. */
export function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.username === "" && url.password === "") return raw;
    url.username = "";
    url.password = "";
    return url.toString().replace(/\/+$/, "");
  } catch {
    return raw.replace(/\/\/[^/@]*@/, "//");
  }
}
