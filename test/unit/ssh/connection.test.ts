import { ConnectionSchema, fingerprintOfKeyBlob, pinnedHostKey } from "../../../providers/ssh/connection";

const ed25519Line =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl host@example";

describe("ConnectionSchema", () => {
  it("fills defaults and keeps the pinned key", () => {
    const c = ConnectionSchema.parse({ host: "h", privateKey: "k", hostKey: ed25519Line });
    expect(c).toMatchObject({ host: "h", port: 22, user: "root", escalation: "auto", readyTimeoutSeconds: 300 });
  });

  it("asks for a credential and a pinned host key, naming the config to set", () => {
    const r = ConnectionSchema.safeParse({ host: "h" });
    expect(r.success).toBe(false);
    const messages = r.error!.issues.map((i) => i.message).join("\n");
    expect(messages).toContain("pulumi config set --secret sshPrivateKey");
    expect(messages).toContain("ssh-keyscan -t ed25519 HOST");
  });

  it("rejects a malformed host key and unknown keys", () => {
    expect(ConnectionSchema.safeParse({ host: "h", password: "p", hostKey: "not a key" }).success).toBe(false);
    expect(ConnectionSchema.safeParse({ host: "h", password: "p", insecureTrustOnFirstUse: true, hots: 1 }).success).toBe(
      false,
    );
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
