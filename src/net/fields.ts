// The HTTP/1.1 field rules the proxy's head writers hold every field to (node:http's and undici's:
// lib/_http_common.js), in one place: the server side's answers (server/h1/response.ts), raw
// answers on an upgraded socket (proxy/raw-response.ts) and the client's request heads
// (upstream/h1/request.ts).

/** RFC 9110 section 5.6.2 token: a field name (and a method). */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** A character a field value (or reason phrase) may not hold: anything but tab, visible ASCII, obs-text. */
export const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/

/**
 * Whether the field `name: value` at index `i` of a flat list equals, name and value, the one at
 * the same index of `checked`: a copy of fields a strict HTTP/1.1 parser (llhttp without lenient
 * flags, or quick-head.ts) already held to the rules above. Equal content is as valid as what was
 * checked, so the list may have been changed in any way since the copy; such a field need not be
 * tested again (two regular expressions a field were ~0.35 µs of a proxied request each way).
 */
export function checkedAlready(
  checked: readonly string[] | undefined,
  i: number,
  name: unknown,
  value: unknown,
): boolean {
  return checked !== undefined && i + 1 < checked.length && name === checked[i] && value === checked[i + 1]
}
