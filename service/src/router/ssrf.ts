// Areas' webhook URLs must not reach into our own network (SSRF): every address the host
// resolves to is checked, not just the first, unless private targets are allowed.
import { lookup } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';

export class UnsafeUrlError extends Error {
  override readonly name = 'UnsafeUrlError';
}

/** Only the public internet: no loopback, private, link-local, CGNAT, multicast, reserved, ... */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  let ip = ipaddr.parse(address);
  // IPv4-mapped (::ffff:a.b.c.d) and the deprecated IPv4-compatible form (::a.b.c.d, ::/96, which
  // ipaddr.js calls unicast but stacks may still route to the IPv4 address) are judged as IPv4.
  if (ip.kind() === 'ipv6') {
    const bytes = ip.toByteArray();
    if ((ip as ipaddr.IPv6).isIPv4MappedAddress() || bytes.slice(0, 12).every((b) => b === 0)) ip = ipaddr.fromByteArray(bytes.slice(12));
  }
  return ip.range() === 'unicast';
}

/** Throws UnsafeUrlError when the URL is not http(s) or resolves to a non-public address. */
export async function checkWebhookUrl(raw: string, allowPrivate: boolean): Promise<void> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UnsafeUrlError('not a valid URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new UnsafeUrlError('must be an http(s) URL');
  if (url.username || url.password) throw new UnsafeUrlError('must not carry credentials');
  if (allowPrivate) return;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  if (ipaddr.isValid(host)) addresses = [host];
  else {
    try {
      addresses = (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
    } catch {
      throw new UnsafeUrlError(`host ${host} does not resolve`);
    }
  }
  const bad = addresses.find((a) => !isPublicAddress(a));
  if (bad !== undefined || addresses.length === 0) throw new UnsafeUrlError(`resolves to a private or reserved address (${bad ?? 'none'}); set FORWARD_ALLOW_PRIVATE=true to allow it`);
}
