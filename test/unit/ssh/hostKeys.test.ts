import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import fc from "fast-check";
import {
  algorithmsNotRead,
  describeHostKey,
  fingerprintLine,
  hostKeyAlgorithmsFor,
  keyTypesOffered,
  parseServerHello,
} from "../../../providers/ssh/hostKeys";
import { generateKeyPair } from "../../sshKeys";

/** RFC 4251 §5 string: uint32 length, then the bytes. */
function sshString(bytes: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

/** What a server sends first: lines, its identification, then KEXINIT as an unencrypted packet with padding. */
function serverHello(hostKeyAlgorithms: string[], options: { preamble?: string[]; padding?: number } = {}): Buffer {
  const lists = [["curve25519-sha256"], hostKeyAlgorithms, ["aes128-ctr"], ["aes128-ctr"], ["hmac-sha2-256"], ["hmac-sha2-256"], ["none"], ["none"], [], []];
  const payload = Buffer.concat([Buffer.from([20]), Buffer.alloc(16, 7), ...lists.map((l) => sshString(Buffer.from(l.join(",")))), Buffer.from([0, 0, 0, 0, 0])]);
  const padding = options.padding ?? 4;
  const packet = Buffer.concat([Buffer.alloc(4), Buffer.from([padding]), payload, Buffer.alloc(padding)]);
  packet.writeUInt32BE(packet.length - 4, 0);
  const lines = [...(options.preamble ?? []), "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"].map((l) => `${l}\r\n`).join("");
  return Buffer.concat([Buffer.from(lines, "latin1"), packet]);
}

describe("parseServerHello", () => {
  const algorithmName = fc.stringMatching(/^[a-z0-9@.-]{1,30}$/);

  it("reads the host-key algorithms of any KEXINIT, after any lines before the identification", () => {
    fc.assert(
      fc.property(fc.array(algorithmName, { maxLength: 12 }), fc.array(fc.stringMatching(/^[A-Za-z ]{0,20}$/), { maxLength: 3 }), fc.integer({ min: 4, max: 255 }), (algorithms, preamble, padding) => {
        expect(parseServerHello(serverHello(algorithms, { preamble, padding }))).toEqual({ ident: "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10", hostKeyAlgorithms: algorithms });
      }),
    );
  });

  it("asks for more bytes at every cut short of the whole packet, however the bytes arrive", () => {
    const hello = serverHello(["rsa-sha2-512", "rsa-sha2-256", "ssh-ed25519"]);
    for (let cut = 0; cut < hello.length; cut++) expect(parseServerHello(hello.subarray(0, cut))).toBeUndefined();
    expect(parseServerHello(hello)?.hostKeyAlgorithms).toEqual(["rsa-sha2-512", "rsa-sha2-256", "ssh-ed25519"]);
  });

  it("refuses what is not an SSH-2 server's start", () => {
    expect(() => parseServerHello(Buffer.from("SSH-1.5-old\r\n"))).toThrow("the server speaks another SSH version: SSH-1.5-old");
    const notKexInit = serverHello(["ssh-ed25519"]);
    notKexInit[notKexInit.indexOf("\n") + 6] = 21;
    expect(() => parseServerHello(notKexInit)).toThrow("the server's first packet is not its key exchange offer (type 21)");
    expect(() => parseServerHello(Buffer.from("HTTP/1.1 400 Bad Request\r\n".repeat(400)))).toThrow("without an SSH identification line");
  });
});

describe("host-key algorithms", () => {
  it("offers an RSA key by SHA-512, then SHA-256, and ssh-rsa (SHA-1) last, whatever the pinned line's label", () => {
    for (const label of ["ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"]) expect(hostKeyAlgorithmsFor(label)).toEqual(["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]);
    expect(hostKeyAlgorithmsFor("ssh-ed25519")).toEqual(["ssh-ed25519"]);
    expect(hostKeyAlgorithmsFor("ecdsa-sha2-nistp384")).toEqual(["ecdsa-sha2-nistp384"]);
  });

  it("reads one key per type a server offers, ed25519 first, and names what it cannot read", () => {
    // OpenSSH 9.2's offer with all three stock keys and a certificate.
    const offered = ["rsa-sha2-512", "rsa-sha2-256", "ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com", "sk-ssh-ed25519@openssh.com"];
    expect(keyTypesOffered(offered)).toEqual([
      { keyType: "ssh-ed25519", algorithms: ["ssh-ed25519"] },
      { keyType: "ecdsa-sha2-nistp256", algorithms: ["ecdsa-sha2-nistp256"] },
      { keyType: "ssh-rsa", algorithms: ["rsa-sha2-512", "rsa-sha2-256"] },
    ]);
    expect(algorithmsNotRead(offered)).toEqual(["ssh-ed25519-cert-v01@openssh.com", "sk-ssh-ed25519@openssh.com"]);
    expect(keyTypesOffered(["ssh-rsa"])).toEqual([{ keyType: "ssh-rsa", algorithms: ["ssh-rsa"] }]);
  });
});

describe("describeHostKey", () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "vfio-host-keys-"))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** ssh-keygen's own line for a public key line, with the comment the file gives it. */
  const sshKeygen = (line: string, comment: string) => {
    const file = path.join(dir, "key.pub");
    fs.writeFileSync(file, `${line} ${comment}\n`);
    return execFileSync("ssh-keygen", ["-lf", file], { encoding: "utf8" }).trim();
  };

  it.each([
    ["ed25519", {}],
    ["ecdsa", { bits: 256 }],
    ["ecdsa", { bits: 384 }],
    ["ecdsa", { bits: 521 }],
    ["rsa", { bits: 2048 }],
    ["rsa", { bits: 3072 }],
  ] as const)("prints a %s key %j as ssh-keygen -lf does", (type, options) => {
    const line = generateKeyPair(type, options).public;
    const blob = Buffer.from(line.split(" ")[1], "base64");
    const key = describeHostKey(blob);
    expect(key.line).toBe(line.split(" ").slice(0, 2).join(" "));
    expect(fingerprintLine(key, "192.0.2.10", 22)).toBe(sshKeygen(key.line, "192.0.2.10"));
    expect(fingerprintLine(key, "192.0.2.10", 2222)).toBe(sshKeygen(key.line, "[192.0.2.10]:2222"));
  });
});
