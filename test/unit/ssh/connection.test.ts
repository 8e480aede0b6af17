import fc from "fast-check";
import { comparableConnection, Connection, connectionIdentity, ConnectionSchema, fingerprintOfKeyBlob, pinnedHostKey, privateKeyProblem } from "../../../providers/ssh/connection";
import { generateKeyPair } from "../../sshKeys";

const ed25519Line =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl host@example";

describe("ConnectionSchema", () => {
  it("fills defaults and keeps the pinned key", () => {
    const c = ConnectionSchema.parse({ host: "h", privateKey: "k", hostKey: ed25519Line });
    expect(c).toMatchObject({ host: "h", port: 22, user: "root", escalation: "auto", readyTimeoutSeconds: 300 });
  });

  it("reads a connection an older version recorded (insecureTrustOnFirstUse) as the one this version makes", () => {
    // HostReboot compares the recorded connection with the new one through comparableConnection.
    const recordedBeforeRename = { host: "h", port: 22, user: "root", privateKey: "k", hostKey: ed25519Line, insecureTrustOnFirstUse: false, escalation: "auto", readyTimeoutSeconds: 300 };
    const now = ConnectionSchema.parse({ host: "h", privateKey: "k", hostKey: ed25519Line });
    expect(now).toEqual({ ...recordedBeforeRename, insecureTrustOnFirstUse: undefined, insecureAcceptAnyHostKey: false });
    expect(ConnectionSchema.parse(recordedBeforeRename)).toEqual(now);
    expect(comparableConnection(recordedBeforeRename)).toEqual(comparableConnection(now));
    expect(ConnectionSchema.parse({ host: "h", privateKey: "k", insecureTrustOnFirstUse: true })).toMatchObject({ insecureAcceptAnyHostKey: true });
    expect(comparableConnection("not a connection")).toBe("not a connection");
  });

  it("takes the ssh-agent as the only credential, and refuses a passphrase with no key to decrypt", () => {
    expect(ConnectionSchema.parse({ host: "h", agent: true, hostKey: ed25519Line })).toMatchObject({ agent: true });
    const r = ConnectionSchema.safeParse({ host: "h", agent: true, passphrase: "p", hostKey: ed25519Line });
    expect(r.error?.issues.map((i) => [i.path.join("."), i.message])).toEqual([
      ["passphrase", "is set but there is no private key for it to decrypt; set the private key too, or drop the passphrase"],
    ]);
  });

  it("asks for a credential and a pinned host key, naming the config to set, even beside a malformed key", () => {
    const r = ConnectionSchema.safeParse({ port: 0 });
    expect(r.error?.issues.map((i) => i.path.join("."))).toEqual(["host", "port", "privateKey", "hostKey"]);
    const messages = r.error!.issues.map((i) => i.message).join("\n");
    expect(messages).toContain("pulumi config set --secret sshPrivateKey");
    expect(messages).toContain("sshAgent: true");
    expect(messages).toContain("npm run trust -- --stack STACK");
    expect(messages).toContain("insecureAcceptAnyHostKey: true accepts any key");
  });

  it("rejects a malformed host key and unknown keys", () => {
    expect(ConnectionSchema.safeParse({ host: "h", password: "p", hostKey: "not a key" }).success).toBe(false);
    expect(ConnectionSchema.safeParse({ host: "h", password: "p", insecureAcceptAnyHostKey: true, hots: 1 }).success).toBe(
      false,
    );
  });
});

describe("privateKeyProblem", () => {
  const passphrase = "a passphrase";
  const encrypted = generateKeyPair("ed25519", { passphrase, cipher: "aes256-ctr", rounds: 16 }).private;

  it("accepts a plain key, and an encrypted one with its passphrase", () => {
    expect(privateKeyProblem(generateKeyPair("ed25519").private, undefined)).toBeUndefined();
    expect(privateKeyProblem(encrypted, passphrase)).toBeUndefined();
  });

  it("blames the key when it is encrypted without a passphrase or unreadable, and the passphrase when it does not decrypt", () => {
    expect(privateKeyProblem(encrypted, undefined)).toEqual({ field: "privateKey", message: expect.stringMatching(/^is encrypted and has no passphrase; /) });
    expect(privateKeyProblem(encrypted, "wrong")).toEqual({
      field: "passphrase",
      message: "does not decrypt the private key (OpenSSH key integrity check failed -- bad passphrase?); set the key's own passphrase",
    });
    expect(privateKeyProblem("ssh-ed25519 AAAA... a public key", undefined)).toEqual({
      field: "privateKey",
      message: expect.stringMatching(/^is not a private key ssh2 can read \(Unsupported key format\); give the whole key file/),
    });
  });
});

describe("host key fingerprints", () => {
  it("match OpenSSH's SHA256 form for a public key line", () => {
    const blob = Buffer.from(ed25519Line.split(" ")[1], "base64");
    expect(pinnedHostKey(ed25519Line)).toEqual({ fingerprint: fingerprintOfKeyBlob(blob), keyType: "ssh-ed25519" });
    expect(fingerprintOfKeyBlob(blob)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  it("accept a bare fingerprint with or without padding", () => {
    const fp = "SHA256:" + "A".repeat(43);
    expect(pinnedHostKey(fp + "=")).toEqual({ fingerprint: fp });
  });
});

describe("connectionIdentity, the pool's key", () => {
  const base = ConnectionSchema.parse({ host: "192.0.2.10", privateKey: "KEY-SECRET", hostKey: ed25519Line });
  const fingerprint = pinnedHostKey(ed25519Line).fingerprint;
  // Each change is one a connection opened for `base` would not serve.
  const others: Record<string, Partial<Connection>> = {
    user: { user: "deploy" },
    host: { host: "192.0.2.11" },
    port: { port: 2222 },
    "pin by fingerprint instead of key line": { hostKey: fingerprint },
    "no pin": { hostKey: undefined, insecureAcceptAnyHostKey: true },
    "another key": { privateKey: "OTHER-KEY" },
    passphrase: { passphrase: "PASS-SECRET" },
    password: { password: "PASSWORD-SECRET" },
    agent: { agent: true },
  };

  it("differs whenever who logs in, where, what is trusted or the credential differs", () => {
    const identities = [base, ...Object.values(others).map((o) => ({ ...base, ...o }))].map((c) => connectionIdentity(c, "/run/agent.sock"));
    expect(new Set(identities).size).toBe(identities.length);
    expect(connectionIdentity({ ...base, agent: true }, "/a.sock")).not.toBe(connectionIdentity({ ...base, agent: true }, "/b.sock"));
  });

  it("is the same for what does not change the connection: escalation, timeouts, a comment on the key line", () => {
    const same = [{ escalation: "sudo" as const }, { readyTimeoutSeconds: 5 }, { hostKey: `${ed25519Line} another-comment` }];
    for (const change of same) expect(connectionIdentity({ ...base, ...change })).toBe(connectionIdentity(base));
  });

  it("never holds a secret", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 4 }), fc.string({ minLength: 4 }), (privateKey, password) => {
        const identity = connectionIdentity({ ...base, privateKey, password });
        expect(identity.includes(privateKey) || identity.includes(password)).toBe(false);
      }),
    );
    expect(connectionIdentity(base)).toBe(`root@192.0.2.10:22 ssh-ed25519 ${fingerprint} ${connectionIdentity(base).split(" ").pop()}`);
  });
});
