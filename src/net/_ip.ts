/**
 * IP addresses as numbers: IPv4 as a number, IPv6 as a bigint, parsed from
 * and written back to text, for the allow-list's exact and CIDR matches.
 *
 * @module
 */

/** `127.0.0.1` as a number. */
export const IPV4_LOOPBACK = 0x7f000001;

/** `::1` as a number. */
export const IPV6_LOOPBACK = 1n;

/** `::ffff:0:0`, the start of the IPv4-mapped IPv6 range (`/96`). */
export const IPV4_MAPPED = 0xffffn << 32n;

/** All 128 bits set. */
export const IPV6_ALL = (1n << 128n) - 1n;

/** An IPv4 address as a number, or an IPv6 address as a bigint. */
export type Ip = number | bigint;

/**
 * Parses an IP address to a number (IPv4) or a bigint (IPv6). Brackets and
 * IPv6 zone ids are dropped; IPv4-mapped IPv6 becomes IPv4.
 */
export function parseIp(text: string): Ip | undefined {
  let body = text;
  if (body.startsWith("[")) {
    if (!body.endsWith("]")) return undefined;
    body = body.slice(1, -1);
    if (!body.includes(":")) return undefined;
  }
  if (!body.includes(":")) return parseIpv4(body);
  const percent = body.indexOf("%");
  if (percent !== -1) {
    if (percent === body.length - 1) return undefined;
    body = body.slice(0, percent);
  }
  const address = parseIpv6(body);
  if (address !== undefined && (address >> 32n) === 0xffffn) {
    return Number(address & 0xffffffffn);
  }
  return address;
}

/** Parses dotted-quad IPv4 (no leading zeros) to a number. */
export function parseIpv4(text: string): number | undefined {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || dots === 3) return undefined;
      value = value * 256 + part;
      dots++;
      part = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && part === 0) return undefined;
      part = part * 10 + (c - 0x30);
      digits++;
      if (part > 255) return undefined;
    } else {
      return undefined;
    }
  }
  if (digits === 0 || dots !== 3) return undefined;
  return value * 256 + part;
}

/** Parses textual IPv6 (RFC 4291 section 2.2) to a bigint. */
export function parseIpv6(text: string): bigint | undefined {
  const gap = text.indexOf("::");
  if (gap !== -1 && text.indexOf("::", gap + 1) !== -1) return undefined;
  const head = gap === -1 ? text : text.slice(0, gap);
  const tail = gap === -1 ? "" : text.slice(gap + 2);
  const headWords = parseWords(head, gap === -1);
  const tailWords = parseWords(tail, true);
  if (headWords === undefined || tailWords === undefined) return undefined;
  const count = headWords.length + tailWords.length;
  if (gap === -1 ? count !== 8 : count > 7) return undefined;
  let value = 0n;
  for (const word of headWords) value = (value << 16n) | BigInt(word);
  value <<= BigInt(16 * (8 - count));
  for (const word of tailWords) value = (value << 16n) | BigInt(word);
  return value;
}

/** Parses colon-separated hex groups, the last maybe dotted-quad IPv4. */
export function parseWords(text: string, last: boolean): number[] | undefined {
  if (text === "") return [];
  const groups = text.split(":");
  const words: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const group = groups[i];
    if (last && i === groups.length - 1 && group.includes(".")) {
      const v4 = parseIpv4(group);
      if (v4 === undefined) return undefined;
      words.push(Math.floor(v4 / 0x10000), v4 & 0xffff);
    } else if (/^[0-9a-f]{1,4}$/i.test(group)) {
      words.push(parseInt(group, 16));
    } else {
      return undefined;
    }
  }
  return words;
}

/** Whether text is a host name: LDH labels, the last not all digits. */
export function isHostName(text: string): boolean {
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split(".");
  return labels.every((label) =>
    /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/i.test(label)
  ) && !/^[0-9]+$/.test(labels[labels.length - 1]);
}

/** Formats a parsed address for logs. */
export function formatIp(address: Ip): string {
  if (typeof address === "number") {
    return [24, 16, 8, 0].map((shift) => (address >>> shift) & 0xff).join(".");
  }
  const words: string[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) {
    words.push(((address >> shift) & 0xffffn).toString(16));
  }
  return words.join(":");
}
