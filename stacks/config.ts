// A host stack's whole configuration, checked by one schema before any resource is declared, so a
// typo in a key, a missing secret or a malformed value stops `pulumi preview` with one message per
// problem that names the key, the value and an example, before anything touches the host.
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";

export const CONFIG_NAMESPACE = "vfio-host";

/** Values that must be set with `pulumi config set --secret`. */
const SECRET_KEYS = ["sshPrivateKey", "sshPassword"] as const;

const example: Record<string, string> = {
  host: "vfio-host:host: 192.0.2.10",
  port: "vfio-host:port: 22",
  user: "vfio-host:user: root",
  hostKey: "vfio-host:hostKey: ssh-ed25519 AAAAC3Nz... (from `ssh-keyscan -t ed25519 HOST`)",
  kernelArgs: 'vfio-host:kernelArgs: ["intel_iommu=on", "iommu=pt"]',
  acknowledgeBootCriticalArgs: 'vfio-host:acknowledgeBootCriticalArgs: ["root"]',
  vfio: 'vfio-host:vfio: { "iommuGroups": [4] }',
  reboot: 'vfio-host:reboot: "auto" (or "never")',
  rebootTimeoutSeconds: "vfio-host:rebootTimeoutSeconds: 900",
  trialBoot: "vfio-host:trialBoot: true (or false)",
};

const list = () => z.array(z.string());
// Config values arrive as strings: "false" must read as false (z.coerce.boolean reads it as true).
const flag = () =>
  z.union([z.boolean(), z.enum(["true", "false"]).transform((v) => v === "true")], { error: `must be true or false, e.g. ${example.trialBoot}` });

export const StackConfigSchema = z
  .strictObject({
    host: z.string().min(1),
    port: z.coerce.number().int().min(1).max(65535).default(22),
    user: z.string().default("root"),
    hostKey: z.string().optional(),
    insecureTrustOnFirstUse: flag().default(false),
    escalation: z.enum(["auto", "none", "sudo", "doas"]).default("auto"),
    readyTimeoutSeconds: z.coerce.number().int().positive().default(300),
    sshPrivateKey: z.string().optional(),
    sshPassword: z.string().optional(),
    kernelArgs: list().min(1),
    removeKernelArgs: list().default([]),
    /** Boot-critical keys (root, init, rd.*, ...) that kernelArgs may set or removeKernelArgs take off. */
    acknowledgeBootCriticalArgs: list().default([]),
    bootBackend: z.enum(["auto", "grub", "extlinux"]).default("auto"),
    /** extlinux (Alpine) only: modules appended to modules=, loaded first by the initramfs. */
    extlinuxModules: list().default([]),
    vfio: z.record(z.string(), z.unknown()),
    reboot: z.enum(["auto", "never"]).default("auto"),
    /** How long a reboot may take before the run fails and says to power-cycle the host. */
    rebootTimeoutSeconds: z.coerce.number().int().min(30).max(3600).default(900),
    /** Boot a change once (GRUB's one-shot) and make it permanent only after that boot passed verification. */
    trialBoot: flag().default(true),
    /** softdog's margin during a trial boot: a trial not verified within it is reset (0: no watchdog). */
    trialWatchdogSeconds: z.coerce.number().int().min(0).max(3600).default(300),
    /** How long a panicking trial waits before it reboots into the previous configuration. */
    trialPanicSeconds: z.coerce.number().int().min(1).max(300).default(10),
    libvirt: z.record(z.string(), z.unknown()).optional(),
  })
  .superRefine((c, ctx) => {
    if (!c.sshPrivateKey && !c.sshPassword) {
      ctx.addIssue({
        code: "custom",
        path: ["sshPrivateKey"],
        message: "is not set; run `pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519` (or set sshPassword as a secret)",
      });
    }
    if (!c.hostKey && !c.insecureTrustOnFirstUse) {
      ctx.addIssue({ code: "custom", path: ["hostKey"], message: "is not set; pin the host with its key, e.g. " + example.hostKey });
    }
  });

export type StackConfig = z.output<typeof StackConfigSchema>;

/** Config values are strings; lists and objects are JSON (as `pulumi config set --path` writes them). */
function parseValue(raw: string): unknown {
  const trimmed = raw.trim();
  if (trimmed.startsWith("[") || trimmed.startsWith("{")) {
    try {
      return JSON.parse(trimmed);
    } catch {
      return raw;
    }
  }
  return raw;
}

/** Pure: the stack's config (key -> raw string, as `allConfig` gives it) checked, or every problem in one message. */
export function parseStackConfig(all: Record<string, string>, secretKeys: ReadonlySet<string>): StackConfig {
  const ours: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [fullKey, raw] of Object.entries(all)) {
    const [namespace, key] = fullKey.split(":");
    if (namespace !== CONFIG_NAMESPACE) continue;
    ours[key] = parseValue(raw);
    if ((SECRET_KEYS as readonly string[]).includes(key) && !secretKeys.has(fullKey)) {
      problems.push(`${fullKey} is stored in plain text; set it again with \`pulumi config set --secret ${key} ...\``);
    }
  }
  const parsed = StackConfigSchema.safeParse(ours);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      if (issue.code === "unrecognized_keys") {
        for (const key of issue.keys) {
          const known = Object.keys(StackConfigSchema.shape);
          const near = known.find((k) => k.toLowerCase() === key.toLowerCase() || editDistance(k, key) <= 2);
          problems.push(
            `${CONFIG_NAMESPACE}:${key} is not a config key of this project` +
              (near ? `; did you mean ${CONFIG_NAMESPACE}:${near}?` : `; the keys are ${known.join(", ")}`),
          );
        }
        continue;
      }
      const key = issue.path.map(String).join(".");
      const top = String(issue.path[0] ?? "");
      const value = issue.path.length > 0 ? JSON.stringify(ours[top]) : undefined;
      problems.push(
        `${CONFIG_NAMESPACE}:${key}${value !== undefined ? ` = ${value}` : ""}: ${issue.message}` +
          (example[top] && !issue.message.includes(example[top]) ? `; e.g. ${example[top]}` : ""),
      );
    }
  }
  if (problems.length > 0) {
    throw new Error(`The stack config has ${problems.length === 1 ? "a problem" : `${problems.length} problems`}:\n  ${problems.join("\n  ")}`);
  }
  return parsed.data!;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

/** The running stack's config, checked. */
export function readStackConfig(): StackConfig {
  const runtimeConfig = require("@pulumi/pulumi/runtime/config") as { isConfigSecret(key: string): boolean };
  const all = pulumi.runtime.allConfig();
  const secrets = new Set(Object.keys(all).filter((k) => runtimeConfig.isConfigSecret(k)));
  return parseStackConfig(all, secrets);
}
