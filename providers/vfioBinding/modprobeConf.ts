// /etc/modprobe.d/vfio.conf, written whole by VfioBinding and read back for drift (modprobe.d(5)).
import { normalizeModuleName } from "../kernel/modules";
import { normalizePciAddress } from "../kernel/pci";

export const MODPROBE_CONF_PATH = "/etc/modprobe.d/vfio.conf";

export const MODPROBE_CONF_HEADER =
  "Managed by vfio-host (Pulumi VfioBinding): binds the selected PCI devices to vfio-pci at boot.\n" +
  "Changes here are overwritten on the next `pulumi up`.";

interface ConfCommon {
  /** Host modules to load only after vfio-pci (their devices must be claimed first). */
  readonly softdepDrivers: readonly string[];
  readonly allowUnsafeInterrupts: boolean;
  /** Comment lines at the top; MODPROBE_CONF_HEADER when absent. */
  readonly header?: string;
}

/**
 * bindBy "ids": vfio-pci claims every device with a listed vendor:device id.
 * bindBy "address": a modprobe `install` command writes vfio-pci into each chosen device's
 * driver_override before vfio-pci loads (Documentation/ABI/testing/sysfs-bus-pci), so identical
 * devices elsewhere stay with the host. Needs kmod's modprobe: busybox ignores `install`.
 */
export type ModprobeConfSpec = ConfCommon &
  ({ readonly bindBy?: "ids"; readonly ids: readonly string[] } | { readonly bindBy: "address"; readonly addresses: readonly string[] });

export function renderModprobeConf(spec: ModprobeConfSpec): string {
  const lines = (spec.header ?? MODPROBE_CONF_HEADER).split("\n").map((line) => `# ${line}`.trimEnd());
  if (spec.bindBy === "address") {
    if (spec.addresses.length === 0) throw new Error("renderModprobeConf: no addresses to bind");
    lines.push(
      "# vfio-pci claims only these addresses: loading it first writes its name into their driver_override.",
      `install vfio-pci for dev in ${spec.addresses.join(" ")}; do echo vfio-pci > /sys/bus/pci/devices/$dev/driver_override; done; /sbin/modprobe --ignore-install vfio-pci $CMDLINE_OPTS`,
    );
  } else {
    if (spec.ids.length === 0) throw new Error("renderModprobeConf: no ids to bind");
    lines.push(`options vfio-pci ids=${spec.ids.join(",")}`);
  }
  if (spec.allowUnsafeInterrupts) lines.push("options vfio_iommu_type1 allow_unsafe_interrupts=1");
  for (const driver of spec.softdepDrivers) lines.push(`softdep ${driver} pre: vfio-pci`);
  return lines.join("\n") + "\n";
}

export interface Softdep {
  readonly module: string;
  readonly pre: readonly string[];
  readonly post: readonly string[];
}

export interface ParsedModprobeConf {
  /** vfio-pci ids= in effect: the last one given, as for any module parameter. */
  readonly ids: readonly string[];
  /** Addresses a vfio-pci `install` command writes driver_override for. */
  readonly addresses: readonly string[];
  /** Modules with a softdep that loads vfio-pci before them. */
  readonly softdepDrivers: readonly string[];
  readonly allowUnsafeInterrupts: boolean;
  /** Module (underscores) to its option words, in order. */
  readonly options: Readonly<Record<string, readonly string[]>>;
  readonly softdeps: readonly Softdep[];
  readonly installs: Readonly<Record<string, string>>;
  /** Other commands (alias, blacklist, remove, ...) as written. */
  readonly other: readonly string[];
}

/** kmod joins a line ending in a backslash with the next, then skips lines starting with `#`. */
function logicalLines(text: string): string[] {
  return text
    .replace(/\\\r?\n/g, "")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

/**
 * Whether every kernel reads a bool module parameter as true (kstrtobool, lib/kstrtox.c: y, 1 or on,
 * in either case; t and true count only on newer kernels, older ones refuse them).
 */
export const isTrueParameter = (value: string): boolean => /^([yY1]|[oO][nN])/.test(value);

export function parseModprobeConf(text: string): ParsedModprobeConf {
  const options: Record<string, string[]> = {};
  const softdeps: Softdep[] = [];
  const installs: Record<string, string> = {};
  const other: string[] = [];
  for (const line of logicalLines(text)) {
    const [command, module, ...rest] = line.split(/\s+/);
    const name = normalizeModuleName(module ?? "");
    if (command === "options" && module) {
      options[name] = [...(options[name] ?? []), ...rest];
    } else if (command === "install" && module) {
      installs[name] = line.replace(/^install\s+\S+\s*/, "");
    } else if (command === "softdep" && module) {
      const pre: string[] = [];
      const post: string[] = [];
      let into: string[] | undefined;
      for (const word of rest) {
        if (word === "pre:") into = pre;
        else if (word === "post:") into = post;
        else into?.push(word);
      }
      softdeps.push({ module: name, pre, post });
    } else {
      other.push(line);
    }
  }
  const lastValue = (module: string, key: string) =>
    (options[module] ?? []).filter((word) => word.startsWith(`${key}=`)).map((word) => word.slice(key.length + 1)).at(-1);
  const ids = lastValue("vfio_pci", "ids");
  const install = installs["vfio_pci"] ?? "";
  const addresses = install.includes("driver_override")
    ? (install.match(/\b[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]\b/g) ?? []).map((a) => normalizePciAddress(a) ?? a)
    : [];
  return {
    ids: ids ? ids.split(",").filter((id) => id !== "").map((id) => id.toLowerCase()) : [],
    addresses,
    softdepDrivers: softdeps.filter((s) => s.pre.map(normalizeModuleName).includes("vfio_pci")).map((s) => s.module),
    allowUnsafeInterrupts: isTrueParameter(lastValue("vfio_iommu_type1", "allow_unsafe_interrupts") ?? ""),
    options,
    softdeps,
    installs,
    other,
  };
}

function listChanges(what: string, before: readonly string[], after: readonly string[]): string[] {
  return [
    ...before.filter((x) => !after.includes(x)).map((x) => `${what}: - ${x}`),
    ...after.filter((x) => !before.includes(x)).map((x) => `${what}: + ${x}`),
  ];
}

/** Lines of the kinds this file is made of, which the ids/driver_override/softdep view already covers. */
const OWN_KIND = [
  /^options\s+vfio[-_]pci\s+ids=\S*$/,
  /^options\s+vfio_iommu_type1\s+allow_unsafe_interrupts=\S*$/,
  /^softdep\s+\S+\s+pre:\s+vfio[-_]pci$/,
  /^install\s+vfio[-_]pci\s/,
];

/** For `pulumi preview`: what writing `next` changes in the file on the host (undefined: absent). */
export function describeModprobeChanges(current: string | undefined, next: string): string[] {
  if (current === undefined) return [`create ${MODPROBE_CONF_PATH}`, ...describeModprobeChanges("", next)];
  if (current === next) return [];
  const was = parseModprobeConf(current);
  const will = parseModprobeConf(next);
  const otherLines = (text: string) => logicalLines(text).filter((line) => !OWN_KIND.some((kind) => kind.test(line)));
  const changes = [
    ...listChanges("ids", was.ids, will.ids),
    ...listChanges("driver_override", was.addresses, will.addresses),
    ...listChanges("softdep", was.softdepDrivers, will.softdepDrivers),
    ...(was.allowUnsafeInterrupts !== will.allowUnsafeInterrupts
      ? [`allow_unsafe_interrupts: ${was.allowUnsafeInterrupts ? "1" : "0"} -> ${will.allowUnsafeInterrupts ? "1" : "0"}`]
      : []),
    ...listChanges("line", otherLines(current), otherLines(next)),
  ];
  return changes.length > 0 ? changes : [`rewrite ${MODPROBE_CONF_PATH} (only comments or layout differ)`];
}
