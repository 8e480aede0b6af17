// HostReboot: reboots the host when its triggers change (the boot-time resources' outputs), waits
// until it answers with a new boot_id, then proves the result: the kernel command line has the
// arguments and every selected device is driven by vfio-pci. A failed proof fails the deployment.
import * as pulumi from "@pulumi/pulumi";
import { isDeepStrictEqual } from "util";
import { z } from "zod";
import { checkInputs, parseChecked } from "../check";
import { dynamicProvider } from "../dynamic";
import { missingKernelArgs } from "../kernelCmdline/kernelArgs";
import { normalizePciAddress } from "../vfioBinding/hostFacts";
import { ConnectionInput, ConnectionSchema } from "../ssh/connection";
import { RemoteHost, withHost } from "../ssh/host";
import { readSections } from "../ssh/sections";

const RebootSchema = z
  .object({
    connection: ConnectionSchema,
    /** Anything whose change means the host must boot again, e.g. the boot-time resources' states. */
    triggers: z.array(z.unknown()).default([]),
    expectArgs: z.array(z.string()).default([]),
    expectVfioDevices: z
      .array(z.string().refine((a) => normalizePciAddress(a) !== undefined, "expectVfioDevices: write PCI addresses like 0000:00:1d.0"))
      .default([]),
    timeoutSeconds: z.number().int().min(30).max(3600).default(900),
  })
  .strict();
type RebootInputs = z.output<typeof RebootSchema>;

export interface BootObservation {
  bootId: string;
  cmdline: string;
  /** PCI address -> driver in use ("" when none). */
  drivers: Record<string, string>;
  /** PCI address -> IOMMU group, known once the IOMMU is on. */
  groups: Record<string, number>;
  /** The `vfio_pci: add [...]` lines of this boot's kernel log. */
  vfioLog: string[];
}

/** Pure: what is wrong with a boot, as "expected ..., found ..." lines. */
export function verifyBoot(observed: BootObservation, expectArgs: readonly string[], devices: readonly string[]): string[] {
  const problems: string[] = [];
  const missing = missingKernelArgs(observed.cmdline, expectArgs);
  if (missing.length > 0) {
    problems.push(`/proc/cmdline lacks ${missing.join(" ")}: expected ${expectArgs.join(" ")}, found "${observed.cmdline.trim()}"`);
  }
  for (const address of devices.map((d) => normalizePciAddress(d)!)) {
    const driver = observed.drivers[address];
    if (driver !== "vfio-pci") {
      problems.push(`${address}: expected driver vfio-pci, found ${driver ? driver : "no driver"}`);
    }
  }
  return problems;
}

async function observeBoot(host: RemoteHost, devices: readonly string[]): Promise<BootObservation> {
  const s = await readSections(
    host,
    {
      bootId: "cat /proc/sys/kernel/random/boot_id",
      cmdline: "cat /proc/cmdline",
      drivers: 'for a in "$@"; do printf "%s %s\\n" "$a" "$(basename "$(readlink "/sys/bus/pci/devices/$a/driver" 2>/dev/null)" 2>/dev/null)"; done',
      groups: 'for a in "$@"; do g=$(readlink "/sys/bus/pci/devices/$a/iommu_group") && printf "%s %s\\n" "$a" "${g##*/}"; done',
      vfioLog: "dmesg | grep -i 'vfio.pci'",
    },
    { args: devices.map((d) => normalizePciAddress(d)!) },
  );
  const drivers: Record<string, string> = {};
  for (const line of s.drivers.split("\n").filter(Boolean)) {
    const [address, driver = ""] = line.split(" ");
    drivers[address] = driver === "." ? "" : driver;
  }
  const groups: Record<string, number> = {};
  for (const line of s.groups.split("\n").filter(Boolean)) {
    const [address, group] = line.split(" ");
    groups[address] = Number(group);
  }
  return { bootId: s.bootId.trim(), cmdline: s.cmdline.trim(), drivers, groups, vfioLog: s.vfioLog.split("\n").filter(Boolean) };
}

// Detached from this SSH session, which dies with the host: systemd-run where there is systemd,
// a backgrounded shell elsewhere (OpenRC on Alpine).
const DETACHED_REBOOT = `if command -v systemd-run >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemd-run --on-active=2 --timer-property=AccuracySec=100ms systemctl reboot
else
  nohup sh -c 'sleep 2; reboot' >/dev/null 2>&1 &
fi`;

async function rebootAndVerify(host: RemoteHost, inputs: RebootInputs): Promise<BootObservation> {
  const before = (await host.run(["cat", "/proc/sys/kernel/random/boot_id"])).stdout.trim();
  const started = Date.now();
  console.error(`${host.label}: rebooting (boot ${before.slice(0, 8)}), waiting up to ${inputs.timeoutSeconds}s`);
  await host.run(["sh", "-c", DETACHED_REBOOT]);
  await host.disconnect();
  const deadline = started + inputs.timeoutSeconds * 1000;
  let observed: BootObservation | undefined;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 3_000));
    try {
      const candidate = await observeBoot(host, inputs.expectVfioDevices);
      if (candidate.bootId !== "" && candidate.bootId !== before) {
        observed = candidate;
        break;
      }
    } catch {
      // Going down or not up yet: drop the connection and try again.
    }
    await host.disconnect();
  }
  if (!observed) {
    throw new Error(
      `${host.label} did not come back with a new boot_id within ${inputs.timeoutSeconds}s; check its console. ` +
        "The boot configuration was backed up under /var/lib/vfio-host/backup before it was changed.",
    );
  }
  console.error(`${host.label}: back after ${Math.round((Date.now() - started) / 1000)}s (boot ${observed.bootId.slice(0, 8)})`);
  const problems = verifyBoot(observed, inputs.expectArgs, inputs.expectVfioDevices);
  if (problems.length > 0) {
    throw new Error(`${host.label} rebooted but verification failed:\n  ${problems.join("\n  ")}`);
  }
  return observed;
}

const inputKeys = ["connection", "triggers", "expectArgs", "expectVfioDevices", "timeoutSeconds"] as const;
const sameInputs = (a: Record<string, unknown>, b: Record<string, unknown>, keys: readonly string[]) =>
  keys.every((k) => isDeepStrictEqual(a[k], b[k]));

export const hostRebootProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news) {
    return checkInputs(RebootSchema, news);
  },
  async diff(_id, olds, news) {
    // Only triggers and expectations reboot; a new key or timeout is recorded without one.
    const changes = !sameInputs(olds, news, inputKeys);
    return { changes, replaces: [] };
  },
  async create(props) {
    const inputs = parseChecked(RebootSchema, props);
    const observed = await withHost(inputs.connection, (host) => rebootAndVerify(host, inputs));
    return { id: `${inputs.connection.host}:${observed.bootId}`, outs: { ...inputs, observed } };
  },
  async update(_id, olds, news) {
    const inputs = parseChecked(RebootSchema, news);
    const rebootNeeded = !sameInputs(olds, news, ["triggers", "expectArgs", "expectVfioDevices"]);
    const observed = rebootNeeded
      ? await withHost(inputs.connection, (host) => rebootAndVerify(host, inputs))
      : (olds.observed as BootObservation);
    return { outs: { ...inputs, observed } };
  },
  async read(id, props) {
    const inputs = parseChecked(RebootSchema, props);
    const observed = await withHost(inputs.connection, (host) => observeBoot(host, inputs.expectVfioDevices));
    return { id, props: { ...props, observed } };
  },
  async delete() {
    // Destroy never reboots a host by itself: the boot-time resources restore the files, and the
    // old configuration takes effect at the next boot the user chooses (see the README).
  },
};

export interface HostRebootArgs {
  connection: pulumi.Input<ConnectionInput>;
  triggers: pulumi.Input<unknown[]>;
  expectArgs?: pulumi.Input<pulumi.Input<string>[]>;
  expectVfioDevices?: pulumi.Input<pulumi.Input<string>[]>;
  timeoutSeconds?: pulumi.Input<number>;
}

export class HostReboot extends pulumi.dynamic.Resource {
  declare readonly observed: pulumi.Output<BootObservation>;

  constructor(name: string, args: HostRebootArgs, opts?: pulumi.CustomResourceOptions) {
    super(dynamicProvider("HostReboot"), name, { ...args, observed: undefined }, {
      ...opts,
      additionalSecretOutputs: ["connection"],
    });
  }
}
