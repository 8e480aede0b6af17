// How a resource reaches its host: validated once, in `check`, before anything touches the host.
// Messages do not start with the key: the issue's path names it (`connection.port` in a resource's
// check, `vfio-host:port` in a host stack, stacks/config.ts).
import { createHash, createHmac, randomBytes } from "crypto";
import { utils as sshUtils } from "ssh2";
import { z } from "zod";

export const escalations = ["auto", "none", "sudo", "doas"] as const;

const hostKeyPattern = /^(SHA256:[A-Za-z0-9+/]{43}=?|(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|rsa-sha2-(256|512)) [A-Za-z0-9+/]+={0,2}( .*)?)$/;

const trueOrFalse = { error: "must be true or false" };
const hostMessage = "is not set; give the host's name or address, e.g. 192.0.2.10";
const portMessage = "must be a port number from 1 to 65535, e.g. 22";
const timeoutMessage = "must be a whole number of seconds from 1 to 3600, e.g. 300";

export const ConnectionSchema = z
  .object({
    host: z.string({ error: hostMessage }).min(1, hostMessage),
    port: z.number({ error: portMessage }).int(portMessage).min(1, portMessage).max(65535, portMessage).default(22),
    user: z
      .string({ error: "must be a login name such as root or deploy" })
      .regex(/^[a-z_][a-z0-9_.-]*$/i, "must be a login name such as root or deploy")
      .default("root"),
    privateKey: z.string().optional(),
    /** Decrypts an encrypted privateKey (`ssh-keygen -p` sets one). */
    passphrase: z.string().optional(),
    password: z.string().optional(),
    /**
     * Log in with the keys of the ssh-agent at $SSH_AUTH_SOCK, read where the command runs: the
     * socket is the machine's, so it is not part of the connection (nor of the stack's state). No
     * default: a connection recorded before this key existed must compare equal to one without it.
     */
    agent: z.boolean(trueOrFalse).optional(),
    hostKey: z
      .string()
      .trim()
      .regex(
        hostKeyPattern,
        "must be the host's OpenSSH public key line (ssh-ed25519 AAAA...) " +
          "or its fingerprint (SHA256:...), e.g. from `ssh-keyscan -t ed25519 HOST`",
      )
      .optional(),
    /** Accept whatever host key the server shows, on every connection: no protection against anyone in between. */
    insecureAcceptAnyHostKey: z.boolean(trueOrFalse).default(false),
    /** The former name of insecureAcceptAnyHostKey, which older versions recorded in the state: read as it. */
    insecureTrustOnFirstUse: z.boolean(trueOrFalse).optional(),
    escalation: z.enum(escalations, { error: 'must be "auto", "none", "sudo" or "doas"' }).default("auto"),
    readyTimeoutSeconds: z.number({ error: timeoutMessage }).int(timeoutMessage).min(1, timeoutMessage).max(3600, timeoutMessage).default(300),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (!c.privateKey && !c.password && !c.agent) {
      ctx.addIssue({
        code: "custom",
        path: ["privateKey"],
        message:
          "is not set, and there is no other way to log in: set the secret `sshPrivateKey` " +
          "(pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519), the secret `sshPassword`, " +
          "or `sshAgent: true` to use the keys of your ssh-agent (SSH_AUTH_SOCK)",
      });
    }
    if (c.passphrase && !c.privateKey) {
      ctx.addIssue({
        code: "custom",
        path: ["passphrase"],
        message: "is set but there is no private key for it to decrypt; set the private key too, or drop the passphrase",
      });
    }
    if (!c.hostKey && !c.insecureAcceptAnyHostKey && !c.insecureTrustOnFirstUse) {
      ctx.addIssue({
        code: "custom",
        path: ["hostKey"],
        message:
          "is not set; pin the host's key: `npm run trust -- --stack STACK` shows the keys the host offers with their " +
          "fingerprints and writes the one you confirm (or give its line, e.g. from `ssh-keyscan -t ed25519 HOST`); " +
          "insecureAcceptAnyHostKey: true accepts any key, and with it anyone in between",
      });
    }
    // Also when a key is malformed, so that a new stack learns everything it lacks at once.
  }, { when: ({ value }) => typeof value === "object" && value !== null })
  .transform(({ insecureTrustOnFirstUse, ...c }) => ({ ...c, insecureAcceptAnyHostKey: c.insecureAcceptAnyHostKey || insecureTrustOnFirstUse === true }));

export type ConnectionInput = z.input<typeof ConnectionSchema>;
export type Connection = z.output<typeof ConnectionSchema>;

/** `user@host:port`, the name used in messages and the host's lock and reads. */
export function connectionLabel(c: Pick<Connection, "user" | "host" | "port">): string {
  return `${c.user}@${c.host}:${c.port}`;
}

/** Per process: credentials enter a pool key as an HMAC under it, never as themselves nor as a plain hash one could test guesses against. */
const credentialKey = randomBytes(32);

/**
 * What a pooled connection was opened to trust and log in with: the login, the pinned key (or
 * "any") and the credential's identity. A connection serves only requests with the same identity,
 * so no resource rides on a connection it would not have opened itself. The agent is identified by
 * its socket, read where the command runs.
 */
export function connectionIdentity(c: Connection, agentSocket = process.env.SSH_AUTH_SOCK): string {
  const pin = c.hostKey ? pinnedHostKey(c.hostKey) : undefined;
  const trust = pin ? `${pin.keyType ?? "fingerprint"} ${pin.fingerprint}` : "any";
  const credential = createHmac("sha256", credentialKey)
    .update(JSON.stringify([c.privateKey ?? null, c.passphrase ?? null, c.password ?? null, c.agent ? (agentSocket ?? "") : null]))
    .digest("base64");
  return `${connectionLabel(c)} ${trust} ${credential}`;
}

/** A connection as it compares across versions: what an older version recorded parses to what this one makes. */
export function comparableConnection(value: unknown): unknown {
  const parsed = ConnectionSchema.safeParse(value);
  return parsed.success ? parsed.data : value;
}

/** OpenSSH's fingerprint of a raw public key blob: SHA256 in unpadded base64. */
export function fingerprintOfKeyBlob(blob: Buffer): string {
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

/** The fingerprint a pinned `hostKey` value stands for, and the key type when the value says it (a key line's first word). */
export function pinnedHostKey(hostKey: string): { fingerprint: string; keyType?: string } {
  const value = hostKey.trim();
  if (value.startsWith("SHA256:")) {
    return { fingerprint: value.replace(/=+$/, "") };
  }
  const [keyType, base64] = value.split(/\s+/);
  return { fingerprint: fingerprintOfKeyBlob(Buffer.from(base64, "base64")), keyType };
}

/** What is wrong with a private key and its passphrase, on the field at fault; undefined when the key decrypts. */
export interface CredentialProblem {
  field: "privateKey" | "passphrase";
  message: string;
}

/**
 * ssh2 reads the key as it connects; this reads it the same way beforehand, so a key that cannot be
 * used is reported as such, not as a failed login. An encrypted OpenSSH key takes about 0.2 s
 * (bcrypt, 16 rounds), so it is called once per program or failed connection, not per parse.
 */
export function privateKeyProblem(privateKey: string, passphrase: string | undefined): CredentialProblem | undefined {
  const parsed = sshUtils.parseKey(privateKey, passphrase);
  if (!(parsed instanceof Error)) return undefined;
  // ssh2's reasons: "Encrypted private OpenSSH key detected, but no passphrase given",
  // "OpenSSH key integrity check failed -- bad passphrase?", "Unsupported key format".
  if (/passphrase/i.test(parsed.message)) {
    return passphrase === undefined
      ? {
          field: "privateKey",
          message:
            "is encrypted and has no passphrase; set it as a secret (`pulumi config set --secret sshPrivateKeyPassphrase`), " +
            "or load the key into your ssh-agent and use it (sshAgent: true)",
        }
      : { field: "passphrase", message: `does not decrypt the private key (${parsed.message}); set the key's own passphrase` };
  }
  return {
    field: "privateKey",
    message: `is not a private key ssh2 can read (${parsed.message}); give the whole key file, e.g. \`pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519\``,
  };
}
