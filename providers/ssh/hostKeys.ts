// A host's keys before anything trusts them: the server's first packet (KEXINIT, RFC 4253 §7.1)
// names the host-key algorithms it offers, and one key exchange per key type shows that key,
// signed by the server, without logging in. `npm run trust` pins one of them; the SSH layer
// negotiates the pinned key's algorithms and, when a host has none of them, says what it offers.
import * as net from "net";
import { Client } from "ssh2";
import { fingerprintOfKeyBlob } from "./connection";

/**
 * The signature algorithms of an RSA key, best first: SHA-512 and SHA-256 (RFC 8332); ssh-rsa
 * (SHA-1) last, so it is used only by a server that offers nothing else (OpenSSH ≥ 8.8 refuses it).
 */
const RSA_ALGORITHMS = ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];

/** The key types ssh2 checks, in the order `npm run trust` suggests one to pin. */
const KEY_TYPES = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"] as const;

/** The host-key algorithms that prove a key of `keyType` (a key line's first word), in the order ssh2 should offer them. */
export function hostKeyAlgorithmsFor(keyType: string): string[] {
  return keyType === "ssh-rsa" || RSA_ALGORITHMS.includes(keyType) ? [...RSA_ALGORITHMS] : [keyType];
}

/** Each key type a server offers (from its KEXINIT list) that ssh2 can check, with the algorithms to ask for it by. */
export function keyTypesOffered(offered: readonly string[]): { keyType: string; algorithms: string[] }[] {
  return KEY_TYPES.map((keyType) => ({ keyType, algorithms: hostKeyAlgorithmsFor(keyType).filter((a) => offered.includes(a)) })).filter(
    (t) => t.algorithms.length > 0,
  );
}

/** Offered algorithms no key type above stands for: certificates, security keys (sk-*), DSA. */
export function algorithmsNotRead(offered: readonly string[]): string[] {
  const known = new Set(KEY_TYPES.flatMap(hostKeyAlgorithmsFor));
  return offered.filter((a) => !known.has(a));
}

/** A host key as OpenSSH shows it: `ssh-keygen -lf` prints `${bits} ${fingerprint} ${comment} (${name})`. */
export interface HostKey {
  /** The key line to pin: `ssh-ed25519 AAAA...`. */
  line: string;
  keyType: string;
  /** ssh-keygen's name of the key type: ED25519, ECDSA, RSA, DSA. */
  name: string;
  bits: number;
  fingerprint: string;
}

/** Reads the strings at the start of a key blob (RFC 4253 §6.6: each a uint32 length, then its bytes). */
function blobStrings(blob: Buffer, count: number): Buffer[] {
  const strings: Buffer[] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    if (offset + 4 > blob.length) throw new Error("a host key blob ends early");
    const length = blob.readUInt32BE(offset);
    if (offset + 4 + length > blob.length) throw new Error("a host key blob ends early");
    strings.push(blob.subarray(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  return strings;
}

/** The bit length of an mpint (RFC 4251 §5), as OpenSSH's BN_num_bits counts it. */
function mpintBits(value: Buffer): number {
  let i = 0;
  while (i < value.length && value[i] === 0) i++;
  return i === value.length ? 0 : (value.length - i - 1) * 8 + (32 - Math.clz32(value[i]));
}

/** What a raw public key blob is: its type, ssh-keygen's name and bit count, its fingerprint and its key line. */
export function describeHostKey(blob: Buffer): HostKey {
  const keyType = blobStrings(blob, 1)[0].toString("latin1");
  const line = `${keyType} ${blob.toString("base64")}`;
  const fingerprint = fingerprintOfKeyBlob(blob);
  if (keyType === "ssh-ed25519") return { line, keyType, name: "ED25519", bits: 256, fingerprint };
  const curve = /^ecdsa-sha2-nistp(256|384|521)$/.exec(keyType);
  if (curve) return { line, keyType, name: "ECDSA", bits: Number(curve[1]), fingerprint };
  // ssh-rsa: e, then n (RFC 4253 §6.6); ssh-dss: p first.
  if (keyType === "ssh-rsa") return { line, keyType, name: "RSA", bits: mpintBits(blobStrings(blob, 3)[2]), fingerprint };
  if (keyType === "ssh-dss") return { line, keyType, name: "DSA", bits: mpintBits(blobStrings(blob, 2)[1]), fingerprint };
  return { line, keyType, name: keyType.toUpperCase(), bits: 0, fingerprint };
}

/** One line as `ssh-keyscan HOST | ssh-keygen -lf -` prints it: the comment is the host as known_hosts names it. */
export function fingerprintLine(key: HostKey, host: string, port: number): string {
  return `${key.bits} ${key.fingerprint} ${port === 22 ? host : `[${host}]:${port}`} (${key.name})`;
}

/** Where the host keeps a key of this type: what to run `ssh-keygen -lf` on at its console. */
export function hostKeyFile(key: Pick<HostKey, "name">): string {
  const file = { ED25519: "ed25519", ECDSA: "ecdsa", RSA: "rsa", DSA: "dsa" }[key.name];
  return file ? `/etc/ssh/ssh_host_${file}_key.pub` : "/etc/ssh/ssh_host_*_key.pub";
}

const SSH_MSG_KEXINIT = 20;
/** RFC 4253 §6.1 asks every implementation to take packets of 35000 bytes; no KEXINIT comes near this. */
const MAX_PACKET = 256 * 1024;

/**
 * The server's identification line and its KEXINIT's host-key algorithms, from the first bytes it
 * sent (RFC 4253 §4.2: lines before the `SSH-` one are allowed; then the first packet, unencrypted);
 * undefined while more bytes are needed. Throws on anything that is not an SSH-2 server's start.
 */
export function parseServerHello(data: Buffer): { ident: string; hostKeyAlgorithms: string[] } | undefined {
  let offset = 0;
  let ident: string | undefined;
  while (ident === undefined) {
    const end = data.indexOf(0x0a, offset);
    if (end < 0) {
      if (data.length > 8192) throw new Error("the server sent 8 KiB without an SSH identification line");
      return undefined;
    }
    const line = data.subarray(offset, end).toString("latin1").replace(/\r$/, "");
    offset = end + 1;
    if (line.startsWith("SSH-")) ident = line;
  }
  if (!/^SSH-(2\.0|1\.99)-/.test(ident)) throw new Error(`the server speaks another SSH version: ${ident}`);
  if (data.length < offset + 5) return undefined;
  const packetLength = data.readUInt32BE(offset);
  if (packetLength > MAX_PACKET || packetLength < 2) throw new Error(`the server's first packet has an impossible length (${packetLength})`);
  if (data.length < offset + 4 + packetLength) return undefined;
  const paddingLength = data[offset + 4];
  const payload = data.subarray(offset + 5, offset + 4 + packetLength - paddingLength);
  if (payload[0] !== SSH_MSG_KEXINIT) throw new Error(`the server's first packet is not its key exchange offer (type ${payload[0]})`);
  // Type byte, 16-byte cookie, then name-lists: kex_algorithms, server_host_key_algorithms, ...
  const [, hostKeyList] = blobStrings(payload.subarray(17), 2);
  return { ident, hostKeyAlgorithms: hostKeyList.toString("latin1").split(",").filter(Boolean) };
}

/** Connects, sends our identification and reads the server's, and its KEXINIT's host-key algorithms; no key exchange. */
export function readServerHello(host: string, port: number, timeoutMs: number): Promise<{ ident: string; hostKeyAlgorithms: string[] }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let received = Buffer.alloc(0);
    const finish = (error?: Error, hello?: { ident: string; hostKeyAlgorithms: string[] }) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(hello!);
    };
    const timer = setTimeout(() => finish(new Error(`${host}:${port} sent no key exchange offer within ${Math.round(timeoutMs / 1000)}s`)), timeoutMs);
    socket.on("connect", () => socket.write("SSH-2.0-vfio_host_trust\r\n"));
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      try {
        const hello = parseServerHello(received);
        if (hello) finish(undefined, hello);
      } catch (error) {
        finish(error as Error);
      }
    });
    socket.on("error", (error) => finish(error));
    socket.on("close", () => finish(new Error(`${host}:${port} closed the connection before its key exchange offer`)));
  });
}

/**
 * The host key the server proves with one of `algorithms`: the key exchange runs to its end (ssh2
 * checks the server's signature before it emits "handshake"), then the connection closes, before
 * any login.
 */
function provenHostKey(host: string, port: number, algorithms: string[], timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let presented: Buffer | undefined;
    client
      .on("handshake", () => {
        client.end();
        resolve(presented!);
      })
      .on("error", (error) => {
        client.end();
        reject(new Error(`${host}:${port}: the key exchange for ${algorithms.join(", ")} failed: ${error.message}`, { cause: error }));
      })
      .on("close", () => reject(new Error(`${host}:${port} closed the connection during the key exchange for ${algorithms.join(", ")}`)));
    client.connect({
      host,
      port,
      username: "vfio-host-trust",
      readyTimeout: timeoutMs,
      algorithms: { serverHostKey: algorithms as never },
      hostVerifier: (key: Buffer) => {
        presented = key;
        return true;
      },
    });
  });
}

export interface HostKeyScan {
  /** The host-key algorithms of the server's KEXINIT, as it sent them. */
  offered: string[];
  /** One per key type, in the order a pin is suggested (ed25519, ECDSA, RSA). */
  keys: HostKey[];
  /** Offered algorithms whose keys were not read (certificates, security keys, DSA). */
  notRead: string[];
}

/** Every host key the server offers that ssh2 can check, each proven by a key exchange of its own. */
export async function scanHostKeys(host: string, port: number, timeoutMs = 10_000): Promise<HostKeyScan> {
  const { hostKeyAlgorithms: offered } = await readServerHello(host, port, timeoutMs);
  const blobs = await Promise.all(keyTypesOffered(offered).map((t) => provenHostKey(host, port, t.algorithms, timeoutMs)));
  return { offered, keys: blobs.map(describeHostKey), notRead: algorithmsNotRead(offered) };
}
