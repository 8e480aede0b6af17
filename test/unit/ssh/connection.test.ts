import { utils } from "ssh2";
import { ConnectionSchema, fingerprintOfKeyBlob, pinnedHostKey, privateKeyProblem } from "../../../providers/ssh/connection";

const ed25519Line =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl host@example";

describe("ConnectionSchema", () => {
  it("fills defaults and keeps the pinned key", () => {
    const c = ConnectionSchema.parse({ host: "h", privateKey: "k", hostKey: ed25519Line });
    expect(c).toMatchObject({ host: "h", port: 22, user: "root", escalation: "auto", readyTimeoutSeconds: 300 });
  });

  it("makes of a stack's inputs exactly the connection an older version recorded, so HostReboot's comparison sees no change", () => {
    // HostReboot compares the recorded connection with the new one as they are, not parsed again.
    const recordedBeforeAgentAndPassphrase = { host: "h", port: 22, user: "root", privateKey: "k", hostKey: ed25519Line, insecureTrustOnFirstUse: false, escalation: "auto", readyTimeoutSeconds: 300 };
    expect(ConnectionSchema.parse({ host: "h", privateKey: "k", hostKey: ed25519Line })).toEqual(recordedBeforeAgentAndPassphrase);
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
    expect(messages).toContain("ssh-keyscan -t ed25519 HOST");
  });

  it("rejects a malformed host key and unknown keys", () => {
    expect(ConnectionSchema.safeParse({ host: "h", password: "p", hostKey: "not a key" }).success).toBe(false);
    expect(ConnectionSchema.safeParse({ host: "h", password: "p", insecureTrustOnFirstUse: true, hots: 1 }).success).toBe(
      false,
    );
  });
});

describe("privateKeyProblem", () => {
  const passphrase = "a passphrase";
  const encrypted = utils.generateKeyPairSync("ed25519", { passphrase, cipher: "aes256-ctr", rounds: 16 }).private;

  it("accepts a plain key, and an encrypted one with its passphrase", () => {
    expect(privateKeyProblem(utils.generateKeyPairSync("ed25519").private, undefined)).toBeUndefined();
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
