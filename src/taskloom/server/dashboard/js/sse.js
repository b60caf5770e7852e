// A Server-Sent Events reader over `fetch`, so the token goes in the Authorization header.
//
// A browser's EventSource cannot set headers: it would need the token in the URL, where
// access logs, the history and proxies keep it. This reads the same `text/event-stream`
// format from a fetch response's body instead.

import { getToken } from "./api.js";

/**
 * Read the event stream at `url` until it ends or `close()` is called.
 * `onOpen()` once the server accepted it; `onEvent(name, data)` per event (name "message"
 * when the server gave none; data is the text of its data lines); `onEnd(status)` once
 * when it ends by itself: `status` is the HTTP status of a refused stream, or 0 for a
 * stream that was open and ended (the server stopped, the token was revoked, the network).
 * Returns `{ close }`.
 */
export function openStream(url, { onOpen = () => {}, onEvent = () => {}, onEnd = () => {} } = {}) {
  const controller = new AbortController();
  let closed = false;

  function finish(status) {
    if (closed) return;
    closed = true;
    onEnd(status);
  }

  async function read() {
    const headers = { Accept: "text/event-stream" };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(url, { headers, signal: controller.signal, cache: "no-store" });
    } catch {
      finish(0);
      return;
    }
    if (!response.ok || !response.body) {
      finish(response.status || 0);
      return;
    }
    onOpen();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let name = "";
    let data = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop(); // the part of a line still to come
        for (const line of lines) {
          if (line === "") {
            // A blank line ends an event (comments and pings carry no data).
            if (data.length) onEvent(name || "message", data.join("\n"));
            name = "";
            data = [];
          } else if (line.startsWith(":")) {
            continue;
          } else {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") name = text;
            else if (field === "data") data.push(text);
          }
        }
      }
    } catch {
      // aborted by close(), or the connection broke
    }
    finish(0);
  }

  read();
  return {
    close() {
      closed = true;
      controller.abort();
    },
  };
}
