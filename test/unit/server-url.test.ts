import { describe, expect, it } from 'vitest';
import { checkServerUrl, isLoopbackHost } from '../../src/agent/server-url.js';

/** What counts as loopback for plain HTTP: decided on the URL as given, before any lookup. */
describe('loopback', () => {
  const hostOf = (url: string) => new URL(url).hostname;

  it.each([
    'http://localhost:8080',
    'http://LOCALHOST',
    'http://127.0.0.1:8080',
    'http://127.255.3.4/',
    'http://127.1/', // the URL parser spells it 127.0.0.1
    'http://2130706433/', // so too
    'http://[::1]:8080',
    'http://[0:0:0:0:0:0:0:1]/',
    'http://[::ffff:127.0.0.1]/',
  ])('%s is loopback', (url) => {
    expect(isLoopbackHost(hostOf(url))).toBe(true);
    expect(checkServerUrl(url, false)).toBeNull();
  });

  it.each([
    'http://10.0.0.5:8080',
    'http://128.0.0.1/',
    'http://0.0.0.0/',
    'http://[::]/',
    'http://[::2]/',
    'http://[::ffff:10.0.0.1]/',
    'http://localhost.example.com/',
    'http://countermand.example:8080',
    'http://127.0.0.1.nip.io/',
  ])('%s is not: refused without --insecure-http, a warning with it', (url) => {
    expect(isLoopbackHost(hostOf(url))).toBe(false);
    expect(() => checkServerUrl(url, false)).toThrow(/refusing plain HTTP to .*--insecure-http/);
    expect(checkServerUrl(url, true)).toMatch(/^plain HTTP to .* \(--insecure-http\): the enrollment token and the agent credential travel in clear$/);
  });

  it('https is always fine; other schemes and non-URLs are refused', () => {
    expect(checkServerUrl('https://countermand.example:8443', false)).toBeNull();
    expect(() => checkServerUrl('ftp://127.0.0.1/', true)).toThrow(/must be https/);
    expect(() => checkServerUrl('countermand.example:8443', true)).toThrow(/must be https|not a URL/);
    expect(() => checkServerUrl('not a url', true)).toThrow(/not a URL/);
  });

  it('server listen addresses, as configured', () => {
    for (const host of ['127.0.0.1', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) expect(isLoopbackHost(host), host).toBe(true);
    for (const host of ['0.0.0.0', '::', '10.1.2.3', 'myhost']) expect(isLoopbackHost(host), host).toBe(false);
  });
});
