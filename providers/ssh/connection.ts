// How a resource reaches its host: validated once, in `check`, before anything touches the host.
import { createHash } from "crypto";
import { z } from "zod";

export const escalations = ["auto", "none", "sudo", "doas"] as const;

const hostKeyPattern = /^(SHA256:[A-Za-z0-9+/]{43}=?|(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|rsa-sha2-(256|512)) [A-Za-z0-9+/]+={0,2}( .*)?)$/;

export const ConnectionSchema = z
  .object({
    host: z.string().min(1, "connection.host is empty: give the host name or address, e.g. 192.0.2.10"),
    port: z.number().int().min(1).max(65535).default(22),
    user: z
      .string()
      .regex(/^[a-z_][a-z0-9_.-]*$/i, "connection.user must be a login name such as root or deploy")
      .default("root"),
    privateKey: z.string().optional(),
    password: z.string().optional(),
    hostKey: z
      .string()
      .trim()
      .regex(
        hostKeyPattern,
        "connection.hostKey must be the host's OpenSSH public key line (ssh-ed25519 AAAA...) " +
          "or its fingerprint (SHA256:...), e.g. from `ssh-keyscan -t ed25519 HOST`",
      )
      .optional(),
    insecureTrustOnFirstUse: z.boolean().default(false),
    escalation: z.enum(escalations).default("auto"),
    readyTimeoutSeconds: z.number().int().min(1).max(3600).default(300),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (!c.privateKey && !c.password) {
      ctx.addIssue({
        code: "custom",
        path: ["privateKey"],
        message:
          "connection needs a credential: set the secret `sshPrivateKey` " +
          "(pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519) or `sshPassword`",
      });
    }
    if (!c.hostKey && !c.insecureTrustOnFirstUse) {
      ctx.addIssue({
        code: "custom",
        path: ["hostKey"],
        message:
          "connection.hostKey is required so the host is pinned: set it to the output of " +
          "`ssh-keyscan -t ed25519 HOST` (or set insecureTrustOnFirstUse: true to accept any key)",
      });
    }
  });

export type ConnectionInput = z.input<typeof ConnectionSchema>;
export type Connection = z.output<typeof ConnectionSchema>;

/** `user@host:port`, the pool key and the name used in messages. */
export function connectionLabel(c: Pick<Connection, "user" | "host" | "port">): string {
  return `${c.user}@${c.host}:${c.port}`;
}

/** OpenSSH's fingerprint of a raw public key blob: SHA256 in unpadded base64. */
export function fingerprintOfKeyBlob(blob: Buffer): string {
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

/** The fingerprint a pinned `hostKey` value stands for, and the key type when the value says it. */
export function pinnedHostKey(hostKey: string): { fingerprint: string; keyType?: string } {
  const value = hostKey.trim();
  if (value.startsWith("SHA256:")) {
    return { fingerprint: value.replace(/=+$/, "") };
  }
  const [keyType, base64] = value.split(/\s+/);
  return { fingerprint: fingerprintOfKeyBlob(Buffer.from(base64, "base64")), keyType };
}
