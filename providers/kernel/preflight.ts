// What the CPU and the firmware allow before any IOMMU argument is written: which vendor's IOMMU
// argument applies, whether the firmware describes an IOMMU at all (the ACPI DMAR table for Intel
// VT-d, IVRS for AMD-Vi; without it no kernel argument can turn one on), whether the kernel turns it
// on by itself, and whether it remaps interrupts (without that vfio_iommu_type1 refuses to attach a
// device unless allow_unsafe_interrupts is set). Facts are read cheaply in the same round trip as
// the caller's; the verdict is a pure function.
import { kernelArgKey, kernelArgValue } from "./cmdline";

export const KERNEL_ARGS_KEY = "vfio-host:kernelArgs";
export const ALLOW_UNSAFE_INTERRUPTS_KEY = "vfio-host:vfio.allowUnsafeInterrupts";

/**
 * Sections for readSections, all world-readable. With NEXT_KERNEL as the prelude the kernel config
 * is the next kernel's, else the running one's. The log lines are the kernel's own
 * (drivers/iommu/intel/irq_remapping.c: "DMAR-IR: Enabled IRQ remapping in x2apic|xapic mode";
 * drivers/iommu/amd/init.c: "AMD-Vi: Interrupt remapping enabled"); dmesg may be restricted to
 * root (kernel.dmesg_restrict), hence the "readable" line. Interrupt chips of remapped interrupts
 * are named IR-... in /proc/interrupts (IR-IO-APIC, IR-PCI-MSI), which anyone can read.
 */
export const PREFLIGHT_SECTIONS = {
  cpuVendor: "sed -n 's/^vendor_id[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1",
  acpiTables: '[ -d /sys/firmware/acpi/tables ] && echo ACPI; for t in DMAR IVRS; do [ -e "/sys/firmware/acpi/tables/$t" ] && echo "$t"; done',
  iommuUnits: `for u in /sys/class/iommu/*; do
  [ -e "$u" ] || continue
  e=-; [ -r "$u/intel-iommu/ecap" ] && read -r e < "$u/intel-iommu/ecap"
  echo "\${u##*/} $e"
done`,
  interruptRemapping: `echo "chips $(grep -c '[[:space:]]IR-' /proc/interrupts)"
if log=$(dmesg 2>/dev/null); then
  echo readable
  printf '%s\\n' "$log" | grep -E 'DMAR-IR: Enabled IRQ remapping|AMD-Vi: Interrupt remapping enabled' | sed 's/^/log /'
fi`,
  iommuKernelConfig: `r=\${release:-$(uname -r)}
for f in "/boot/config-$r" "/boot/config-\${r##*-}"; do
  [ -r "$f" ] || continue
  echo "file $f"; grep -E '^CONFIG_(INTEL_IOMMU|INTEL_IOMMU_DEFAULT_ON|AMD_IOMMU|IRQ_REMAP)=' "$f"; break
done`,
  cmdline: "cat /proc/cmdline",
} as const;

export type PreflightSection = keyof typeof PREFLIGHT_SECTIONS;
export type CpuVendor = "intel" | "amd" | "unknown";

export interface PreflightFacts {
  /**
   * Whose IOMMU the platform has: the firmware's table decides (DMAR: Intel VT-d, IVRS: AMD-Vi),
   * since the kernel picks its IOMMU driver by it, whatever the CPU says (a VM with QEMU's
   * emulated intel-iommu on an AMD host, or QEMU's qemu64 model, reports AuthenticAMD with a DMAR
   * table). Without either table, the CPU's vendor, for the message that says which to enable.
   */
  readonly vendor: CpuVendor;
  /** /proc/cpuinfo's vendor_id as found: "GenuineIntel", "AuthenticAMD". */
  readonly vendorId: string;
  /** /sys/firmware/acpi/tables exists: the firmware's IOMMU tables, or their absence, can be read. */
  readonly acpi: boolean;
  readonly dmarTable: boolean;
  readonly ivrsTable: boolean;
  /** /sys/class/iommu: one per IOMMU the running kernel drives, none while it is off. `ecap`: Intel's extended capabilities, hex. */
  readonly iommuUnits: readonly { readonly name: string; readonly ecap?: string }[];
  /** Interrupt chips named IR-... in /proc/interrupts. */
  readonly remappedChips: number;
  /** The kernel's "remapping enabled" lines; undefined when dmesg could not be read. */
  readonly kernelLog: readonly string[] | undefined;
  /** The kernel config's IOMMU options, when /boot has the config. */
  readonly kernelConfig: { readonly file: string; readonly options: Readonly<Record<string, string>> } | undefined;
  readonly cmdline: string;
}

const tagged = (text: string, tag: string) =>
  text.split("\n").filter((line) => line.startsWith(`${tag} `)).map((line) => line.slice(tag.length + 1).trim());

export function parsePreflightSections(s: Record<PreflightSection, string>): PreflightFacts {
  const vendorId = s.cpuVendor.trim();
  const tables = s.acpiTables.split("\n").map((t) => t.trim());
  const log = s.interruptRemapping.split("\n").includes("readable") ? tagged(s.interruptRemapping, "log") : undefined;
  const file = tagged(s.iommuKernelConfig, "file")[0];
  const options = Object.fromEntries(
    s.iommuKernelConfig.split("\n").flatMap((line) => {
      const match = /^(CONFIG_[A-Z0-9_]+)=(.*)$/.exec(line.trim());
      return match ? [[match[1], match[2]]] : [];
    }),
  );
  return {
    vendor: tables.includes("DMAR") ? "intel" : tables.includes("IVRS") ? "amd" : vendorId === "GenuineIntel" ? "intel" : vendorId === "AuthenticAMD" ? "amd" : "unknown",
    vendorId,
    acpi: tables.includes("ACPI"),
    dmarTable: tables.includes("DMAR"),
    ivrsTable: tables.includes("IVRS"),
    iommuUnits: s.iommuUnits.split("\n").flatMap((line) => {
      const [name, ecap] = line.trim().split(/\s+/);
      return name ? [{ name, ...(ecap && ecap !== "-" ? { ecap } : {}) }] : [];
    }),
    remappedChips: Number(tagged(s.interruptRemapping, "chips")[0] ?? 0) || 0,
    kernelLog: log,
    kernelConfig: file ? { file, options } : undefined,
    cmdline: s.cmdline.trim(),
  };
}

/** The comma-separated options of the last `key=` arg (the one the kernel acts on): "on,igfx_off" -> ["on", "igfx_off"]. */
export function lastArgOptions(args: readonly string[], key: string): string[] | undefined {
  const last = args.filter((arg) => kernelArgKey(arg) === key).at(-1);
  return last === undefined ? undefined : (kernelArgValue(last) ?? "").split(",");
}

/** intel_iommu=on|off as the kernel reads it: the last of either in the last intel_iommu= arg. */
function intelSwitch(args: readonly string[]): "on" | "off" | undefined {
  return lastArgOptions(args, "intel_iommu")
    ?.filter((o) => o === "on" || o === "off")
    .at(-1) as "on" | "off" | undefined;
}

const intelDefaultOn = (facts: PreflightFacts) => facts.kernelConfig?.options.CONFIG_INTEL_IOMMU_DEFAULT_ON === "y";

/**
 * Whether a boot with `args` has the IOMMU on: with intel_iommu=on; on Intel by default where the
 * kernel is built with CONFIG_INTEL_IOMMU_DEFAULT_ON=y and the args do not say off; on AMD whenever
 * the firmware has an IVRS table and the args do not say amd_iommu=off (the AMD driver has no
 * "on": it initialises every IOMMU the IVRS table lists, drivers/iommu/amd/init.c). The args' own
 * intel_iommu=on counts on any CPU: whether they suit the CPU is iommuPreflight's to judge.
 */
export function iommuOnAtBoot(facts: PreflightFacts, args: readonly string[]): boolean {
  const intel = intelSwitch(args);
  if (intel === "on") return true;
  if (facts.vendor === "amd") return facts.ivrsTable && !(lastArgOptions(args, "amd_iommu") ?? []).includes("off");
  return intel === undefined && facts.vendor === "intel" && facts.dmarTable && intelDefaultOn(facts);
}

/** The IOMMU arguments to suggest for this CPU: iommu=pt (no translation for the host's own devices) everywhere. */
export function iommuArgsFor(vendor: CpuVendor): string[] {
  return vendor === "amd" ? ["iommu=pt"] : ["intel_iommu=on", "iommu=pt"];
}

export interface InterruptRemapping {
  readonly state: "on" | "off" | "unknown";
  /** What it was told from, for messages. */
  readonly detail: string;
}

/** Intel's ecap bit 3: Interrupt Remapping support (VT-d spec 11.4.3; ecap_ir_support in include/linux/intel-iommu.h). */
const supportsRemapping = (ecap: string) => /^(0x)?[0-9a-f]+$/i.test(ecap) && (BigInt(`0x${ecap.replace(/^0x/i, "")}`) & 8n) !== 0n;

/**
 * Whether interrupts are remapped: evidence of it wins (IR- chips, the kernel's log line), which
 * can show even with DMA translation off; without any, it is off when the IOMMU is on now, and
 * cannot be known while the IOMMU is off.
 */
export function interruptRemapping(facts: PreflightFacts): InterruptRemapping {
  const logged = facts.kernelLog?.[0];
  if (facts.remappedChips > 0) return { state: "on", detail: `${facts.remappedChips} interrupt chips in /proc/interrupts are IR- (remapped)` };
  if (logged) return { state: "on", detail: `the kernel logged "${logged}"` };
  if (facts.iommuUnits.length === 0) {
    return { state: "unknown", detail: "the IOMMU is off now (/sys/class/iommu is empty), so whether it remaps interrupts shows only after a boot with it on" };
  }
  const intel = facts.iommuUnits.filter((u) => u.ecap !== undefined);
  const lacking = intel.filter((u) => !supportsRemapping(u.ecap!));
  const turnedOff = facts.cmdline.split(/\s+/).find((arg) => arg === "intremap=off" || arg === "nointremap");
  const why =
    lacking.length > 0
      ? `${lacking.map((u) => `${u.name} (ecap ${u.ecap})`).join(", ")} cannot remap interrupts (bit 3 of the extended capabilities is clear)`
      : turnedOff
        ? `the running kernel was booted with ${turnedOff}`
        : "/proc/interrupts shows no IR- interrupt chips" + (facts.kernelLog ? " and the kernel logged no remapping" : "");
  return { state: "off", detail: why };
}

/** A refusal, or else a note. */
export type InterruptRemappingVerdict = { readonly refusal: string; readonly note?: undefined } | { readonly refusal?: undefined; readonly note: string };

/** The interrupt remapping part of the preflight, which VfioBinding applies on its own. */
export function interruptRemappingCheck(ir: InterruptRemapping, allowUnsafeInterrupts: boolean): InterruptRemappingVerdict {
  if (ir.state === "on") {
    return {
      note:
        `Interrupt remapping is on (${ir.detail})` +
        (allowUnsafeInterrupts ? `, so ${ALLOW_UNSAFE_INTERRUPTS_KEY} is not needed: set it back to false` : ""),
    };
  }
  if (ir.state === "unknown") {
    return {
      note:
        `Interrupt remapping is not known yet: ${ir.detail}; it is checked on the first run after that boot` +
        (allowUnsafeInterrupts ? ` (${ALLOW_UNSAFE_INTERRUPTS_KEY} is true, so it will not stop the binding)` : ""),
    };
  }
  if (allowUnsafeInterrupts) {
    return { note: `Interrupt remapping is off (${ir.detail}); passed over because ${ALLOW_UNSAFE_INTERRUPTS_KEY} is true: a guest can inject interrupts into the host` };
  }
  return {
    refusal:
      `Interrupt remapping is off on this host although its IOMMU is on: ${ir.detail}. vfio_iommu_type1 then refuses to attach the ` +
      `devices ("No interrupt remapping support"), unless told to accept that a guest can inject interrupts into the host: set ` +
      `${ALLOW_UNSAFE_INTERRUPTS_KEY} to true to accept it, or turn interrupt remapping on (a firmware update or setting; drop ` +
      "intremap=off from the kernel command line)",
  };
}

export interface PreflightVerdict {
  /** Each names the stack key that fixes or acknowledges it; nothing may be written while there is one. */
  readonly refusals: readonly string[];
  readonly notes: readonly string[];
}

const AMD_IOMMU_VALUES = "fullflush, off, force_isolation, force_enable, pgtbl_v1, pgtbl_v2, irtcachedis, nohugepages, v2_pgsizes_only";

/**
 * The verdict on `args` (the stack's kernel args) for this host. Intel: the DMAR table must exist
 * and intel_iommu=on is the argument, unless the kernel enables the IOMMU by default. AMD: the
 * IVRS table must exist, the kernel turns the IOMMU on by itself, and `amd_iommu=on` is no value
 * the kernel knows (Documentation/admin-guide/kernel-parameters.txt; parse_amd_iommu_options only
 * logs "Unknown option"), so it is refused on any CPU rather than written. Then interrupt remapping.
 */
/**
 * `allowUnsafeInterrupts` undefined leaves interrupt remapping out: KernelCmdline checks what the
 * firmware and the args allow, VfioBinding (which has the key) checks remapping.
 */
export function iommuPreflight(facts: PreflightFacts, options: { readonly args: readonly string[]; readonly allowUnsafeInterrupts?: boolean }): PreflightVerdict {
  const { args } = options;
  const refusals: string[] = [];
  const notes: string[] = [];
  const iommuOnNow = facts.iommuUnits.length > 0;
  for (const arg of args.filter((a) => kernelArgKey(a) === "amd_iommu" && (kernelArgValue(a) ?? "").split(",").includes("on"))) {
    refusals.push(
      `${KERNEL_ARGS_KEY} has "${arg}", which the kernel does not know (amd_iommu= takes ${AMD_IOMMU_VALUES}): the AMD IOMMU is on ` +
        `by default whenever the firmware enables it. Drop "${arg}" from ${KERNEL_ARGS_KEY}; iommu=pt stays valid`,
    );
  }
  if (!facts.acpi) {
    // Without ACPI in sysfs (device-tree platforms, a /sys that is not the host's) the tables' absence proves nothing.
    notes.push("No ACPI tables in /sys/firmware/acpi: whether the firmware enables the IOMMU was not checked; the boot verification after the reboot will tell");
  } else if (facts.vendor === "intel") {
    if (!facts.dmarTable) {
      refusals.push(
        "VT-d is off in the firmware (no ACPI DMAR table in /sys/firmware/acpi/tables); enable it in the BIOS setup (Intel " +
          `Virtualization Technology for Directed I/O) and run again: no value of ${KERNEL_ARGS_KEY} can turn on an IOMMU the firmware does not describe`,
      );
    }
    const config = facts.kernelConfig ? `CONFIG_INTEL_IOMMU_DEFAULT_ON=y in ${facts.kernelConfig.file}` : "";
    const intel = intelSwitch(args);
    if (intel === "off") {
      refusals.push(`${KERNEL_ARGS_KEY} has intel_iommu=off, which keeps the IOMMU off; write intel_iommu=on instead`);
    } else if (intelDefaultOn(facts)) {
      notes.push(`The kernel turns the Intel IOMMU on by itself (${config})${intel === "on" ? ": intel_iommu=on is harmless but not needed" : ""}`);
    } else if (intel === undefined && iommuOnNow) {
      notes.push(`The IOMMU is on now, but ${KERNEL_ARGS_KEY} has no intel_iommu=on: whatever turned it on (${facts.cmdline}) must stay, or add intel_iommu=on`);
    } else if (intel === undefined) {
      refusals.push(
        `${KERNEL_ARGS_KEY} does not turn the Intel IOMMU on and the kernel does not by itself ` +
          `(${facts.kernelConfig ? `${facts.kernelConfig.file} lacks CONFIG_INTEL_IOMMU_DEFAULT_ON=y` : "its config is not in /boot"}); add "intel_iommu=on" to ${KERNEL_ARGS_KEY}`,
      );
    }
  } else if (facts.vendor === "amd") {
    if (!facts.ivrsTable) {
      refusals.push(
        "AMD-Vi is off in the firmware (no ACPI IVRS table in /sys/firmware/acpi/tables); enable it in the BIOS setup (IOMMU or " +
          `AMD-Vi, often next to SVM) and run again: no value of ${KERNEL_ARGS_KEY} can turn on an IOMMU the firmware does not describe`,
      );
    }
    if ((lastArgOptions(args, "amd_iommu") ?? []).includes("off")) {
      refusals.push(`${KERNEL_ARGS_KEY} has amd_iommu=off, which keeps the IOMMU off; drop it`);
    } else if (facts.ivrsTable) {
      notes.push("The kernel turns the AMD IOMMU on by itself, as the firmware enables it (ACPI IVRS table): no amd_iommu= argument is needed");
    }
    if (intelSwitch(args) === "on") notes.push(`intel_iommu=on in ${KERNEL_ARGS_KEY} does nothing on an AMD-Vi platform`);
  } else {
    notes.push(`The CPU (vendor_id "${facts.vendorId}") is neither GenuineIntel nor AuthenticAMD: the firmware's IOMMU table and the IOMMU arguments were not checked`);
  }
  if (options.allowUnsafeInterrupts !== undefined) {
    const ir = interruptRemappingCheck(interruptRemapping(facts), options.allowUnsafeInterrupts);
    if (ir.refusal) refusals.push(ir.refusal);
    if (ir.note) notes.push(ir.note);
  }
  return { refusals, notes };
}
