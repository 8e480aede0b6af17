import { execFileSync } from "child_process";
import fc from "fast-check";
import {
  ALLOW_UNSAFE_INTERRUPTS_KEY,
  interruptRemapping,
  interruptRemappingCheck,
  iommuArgsFor,
  iommuOnAtBoot,
  iommuPreflight,
  KERNEL_ARGS_KEY,
  parsePreflightSections,
  PREFLIGHT_SECTIONS,
  PreflightSection,
} from "../../../providers/kernel/preflight";

/**
 * What the sections print. The lab VM: QEMU q35 with `-device intel-iommu,intremap=on` (scripts/lab),
 * Debian 12, booted with intel_iommu=on: one DMAR unit whose ecap has bit 3 (interrupt remapping)
 * set, IR-IO-APIC and IR-PCI-MSI chips, and the kernel's own log line. An AMD desktop likewise,
 * with the line drivers/iommu/amd/init.c prints. The values are as the snippets print them; the
 * ecap numbers are chosen for their bit 3, not copied from a machine.
 */
const intelLab: Record<PreflightSection, string> = {
  cpuVendor: "GenuineIntel\n",
  acpiTables: "ACPI\nDMAR\n",
  iommuUnits: "dmar0 12008c22260286\n",
  interruptRemapping: "chips 14\nreadable\nlog [    0.041000] DMAR-IR: Enabled IRQ remapping in x2apic mode\n",
  iommuKernelConfig: "file /boot/config-6.1.0-18-amd64\nCONFIG_IRQ_REMAP=y\nCONFIG_AMD_IOMMU=y\nCONFIG_INTEL_IOMMU=y\n",
  cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=0e4f ro console=ttyS0 intel_iommu=on iommu=pt\n",
};
const amdDesktop: Record<PreflightSection, string> = {
  cpuVendor: "AuthenticAMD\n",
  acpiTables: "ACPI\nIVRS\n",
  iommuUnits: "ivhd0 -\n",
  interruptRemapping: "chips 31\nreadable\nlog [    0.402118] AMD-Vi: Interrupt remapping enabled\n",
  iommuKernelConfig: "file /boot/config-6.1.0-18-amd64\nCONFIG_IRQ_REMAP=y\nCONFIG_AMD_IOMMU=y\nCONFIG_INTEL_IOMMU=y\n",
  cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=0e4f ro quiet\n",
};
/** The lab before its first reboot: the IOMMU off (intel_iommu not given, the Debian kernel not default-on), so no units; dmesg root-only. */
const intelLabBefore = { ...intelLab, iommuUnits: "", interruptRemapping: "chips 0\n", cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 ro console=ttyS0\n" };
const preflight = (sections: Record<PreflightSection, string>, args: string[], allowUnsafeInterrupts = false) =>
  iommuPreflight(parsePreflightSections(sections), { args, allowUnsafeInterrupts });

describe("parsePreflightSections", () => {
  it("reads the vendor, the firmware's tables, the IOMMU units, the remapping evidence and the kernel config", () => {
    expect(parsePreflightSections(intelLab)).toEqual({
      vendor: "intel",
      vendorId: "GenuineIntel",
      acpi: true,
      dmarTable: true,
      ivrsTable: false,
      iommuUnits: [{ name: "dmar0", ecap: "12008c22260286" }],
      remappedChips: 14,
      kernelLog: ["[    0.041000] DMAR-IR: Enabled IRQ remapping in x2apic mode"],
      kernelConfig: { file: "/boot/config-6.1.0-18-amd64", options: { CONFIG_IRQ_REMAP: "y", CONFIG_AMD_IOMMU: "y", CONFIG_INTEL_IOMMU: "y" } },
      cmdline: intelLab.cmdline.trim(),
    });
    expect(parsePreflightSections(intelLabBefore)).toMatchObject({ iommuUnits: [], remappedChips: 0, kernelLog: undefined });
    expect(parsePreflightSections({ ...amdDesktop, cpuVendor: "" })).toMatchObject({ vendor: "amd", iommuUnits: [{ name: "ivhd0" }] });
    expect(parsePreflightSections({ ...amdDesktop, cpuVendor: "", acpiTables: "ACPI\n" })).toMatchObject({ vendor: "unknown" });
  });

  it("goes by the firmware's table, not the CPU: QEMU's qemu64 model says AuthenticAMD on the lab, whose IOMMU is the emulated VT-d", () => {
    const lab = { ...intelLabBefore, cpuVendor: "AuthenticAMD\n" };
    expect(parsePreflightSections(lab)).toMatchObject({ vendor: "intel", vendorId: "AuthenticAMD" });
    expect(preflight(lab, ["intel_iommu=on", "iommu=pt"]).refusals).toEqual([]);
  });

  it("runs on this machine and parses whatever it finds (each snippet is valid sh)", () => {
    const sections = Object.fromEntries(
      Object.entries(PREFLIGHT_SECTIONS).map(([name, snippet]) => [name, execFileSync("sh", ["-c", `(${snippet}\n) 2>/dev/null || true`]).toString()]),
    ) as Record<PreflightSection, string>;
    const facts = parsePreflightSections(sections);
    expect(facts.cmdline).toBe(execFileSync("cat", ["/proc/cmdline"]).toString().trim());
    expect(["intel", "amd", "unknown"]).toContain(facts.vendor);
  });
});

describe("iommuPreflight on Intel", () => {
  it("passes the lab's args, with interrupt remapping on", () => {
    expect(preflight(intelLab, ["intel_iommu=on", "iommu=pt"])).toEqual({
      refusals: [],
      notes: ["Interrupt remapping is on (14 interrupt chips in /proc/interrupts are IR- (remapped))"],
    });
  });

  it("refuses VT-d off in the firmware before anything is written, whatever the args", () => {
    const { refusals } = preflight({ ...intelLabBefore, acpiTables: "ACPI\n" }, ["intel_iommu=on", "iommu=pt"]);
    expect(refusals).toEqual([
      "VT-d is off in the firmware (no ACPI DMAR table in /sys/firmware/acpi/tables); enable it in the BIOS setup (Intel Virtualization " +
        "Technology for Directed I/O) and run again: no value of vfio-host:kernelArgs can turn on an IOMMU the firmware does not describe",
    ]);
  });

  it("asks for intel_iommu=on where the kernel does not turn the IOMMU on by itself, and notes when it does", () => {
    expect(preflight(intelLabBefore, ["iommu=pt"]).refusals).toEqual([
      `${KERNEL_ARGS_KEY} does not turn the Intel IOMMU on and the kernel does not by itself (/boot/config-6.1.0-18-amd64 lacks CONFIG_INTEL_IOMMU_DEFAULT_ON=y); add "intel_iommu=on" to vfio-host:kernelArgs`,
    ]);
    const defaultOn = { ...intelLabBefore, iommuKernelConfig: "file /boot/config-6.8.0-31-generic\nCONFIG_INTEL_IOMMU=y\nCONFIG_INTEL_IOMMU_DEFAULT_ON=y\n" };
    expect(preflight(defaultOn, ["iommu=pt"])).toEqual({
      refusals: [],
      notes: [
        "The kernel turns the Intel IOMMU on by itself (CONFIG_INTEL_IOMMU_DEFAULT_ON=y in /boot/config-6.8.0-31-generic)",
        "Interrupt remapping is not known yet: the IOMMU is off now (/sys/class/iommu is empty), so whether it remaps interrupts shows only after a boot with it on; it is checked on the first run after that boot",
      ],
    });
    expect(preflight(defaultOn, ["intel_iommu=on"]).notes[0]).toMatch(/: intel_iommu=on is harmless but not needed$/);
    expect(preflight(intelLab, ["intel_iommu=on,igfx_off", "intel_iommu=off"]).refusals).toEqual([
      `${KERNEL_ARGS_KEY} has intel_iommu=off, which keeps the IOMMU off; write intel_iommu=on instead`,
    ]);
  });
});

describe("iommuPreflight on AMD", () => {
  it("refuses amd_iommu=on, which the kernel does not know, and keeps iommu=pt", () => {
    expect(preflight(amdDesktop, ["amd_iommu=on", "iommu=pt"])).toEqual({
      refusals: [
        'vfio-host:kernelArgs has "amd_iommu=on", which the kernel does not know (amd_iommu= takes fullflush, off, force_isolation, force_enable, ' +
          "pgtbl_v1, pgtbl_v2, irtcachedis, nohugepages, v2_pgsizes_only): the AMD IOMMU is on by default whenever the firmware enables it. " +
          'Drop "amd_iommu=on" from vfio-host:kernelArgs; iommu=pt stays valid',
      ],
      notes: [
        "The kernel turns the AMD IOMMU on by itself, as the firmware enables it (ACPI IVRS table): no amd_iommu= argument is needed",
        'Interrupt remapping is on (31 interrupt chips in /proc/interrupts are IR- (remapped))',
      ],
    });
    expect(preflight(amdDesktop, ["iommu=pt"]).refusals).toEqual([]);
    // Also inside a comma list, and on an Intel CPU: a stack copied between hosts must not carry it.
    expect(preflight(intelLab, ["intel_iommu=on", "amd_iommu=force_isolation,on"]).refusals).toHaveLength(1);
  });

  it("does not refuse where sysfs has no ACPI tables at all (a device-tree platform, a /sys that is not the host's): a note says it was not checked", () => {
    const verdict = preflight({ ...amdDesktop, acpiTables: "", iommuUnits: "", interruptRemapping: "chips 0\n" }, ["iommu=pt"]);
    expect(verdict.refusals).toEqual([]);
    expect(verdict.notes[0]).toMatch(/^No ACPI tables in \/sys\/firmware\/acpi: whether the firmware enables the IOMMU was not checked/);
  });

  it("refuses AMD-Vi off in the firmware, and amd_iommu=off", () => {
    expect(preflight({ ...amdDesktop, acpiTables: "ACPI\n", iommuUnits: "", interruptRemapping: "chips 0\n" }, ["iommu=pt"]).refusals).toEqual([
      "AMD-Vi is off in the firmware (no ACPI IVRS table in /sys/firmware/acpi/tables); enable it in the BIOS setup (IOMMU or AMD-Vi, often " +
        "next to SVM) and run again: no value of vfio-host:kernelArgs can turn on an IOMMU the firmware does not describe",
    ]);
    expect(preflight(amdDesktop, ["amd_iommu=off"]).refusals).toEqual([`${KERNEL_ARGS_KEY} has amd_iommu=off, which keeps the IOMMU off; drop it`]);
  });
});

describe("interrupt remapping", () => {
  const iommuOnWithout = (ecap: string, cmdline = "ro quiet") => ({ ...intelLab, iommuUnits: `dmar0 ${ecap}\n`, interruptRemapping: "chips 0\nreadable\n", cmdline });

  it("refuses it off while the IOMMU is on, naming why and the key that acknowledges it", () => {
    expect(preflight(iommuOnWithout("f0050d2"), ["intel_iommu=on"]).refusals).toEqual([
      "Interrupt remapping is off on this host although its IOMMU is on: dmar0 (ecap f0050d2) cannot remap interrupts (bit 3 of the extended " +
        'capabilities is clear). vfio_iommu_type1 then refuses to attach the devices ("No interrupt remapping support"), unless told to accept ' +
        `that a guest can inject interrupts into the host: set ${ALLOW_UNSAFE_INTERRUPTS_KEY} to true to accept it, or turn interrupt remapping on ` +
        "(a firmware update or setting; drop intremap=off from the kernel command line)",
    ]);
    expect(interruptRemapping(parsePreflightSections(iommuOnWithout("f0050de", "ro intremap=off")))).toEqual({
      state: "off",
      detail: "the running kernel was booted with intremap=off",
    });
    expect(interruptRemapping(parsePreflightSections(iommuOnWithout("f0050de")))).toEqual({
      state: "off",
      detail: "/proc/interrupts shows no IR- interrupt chips and the kernel logged no remapping",
    });
  });

  it("passes it over with allowUnsafeInterrupts, and says so; says the key is not needed where remapping is on", () => {
    expect(preflight(iommuOnWithout("f0050d2"), ["intel_iommu=on"], true)).toEqual({
      refusals: [],
      notes: [
        `Interrupt remapping is off (dmar0 (ecap f0050d2) cannot remap interrupts (bit 3 of the extended capabilities is clear)); passed over because ${ALLOW_UNSAFE_INTERRUPTS_KEY} is true: a guest can inject interrupts into the host`,
      ],
    });
    expect(interruptRemappingCheck({ state: "on", detail: "x" }, true).note).toBe(`Interrupt remapping is on (x), so ${ALLOW_UNSAFE_INTERRUPTS_KEY} is not needed: set it back to false`);
  });

  it("is a note, not a refusal, while the IOMMU is off; evidence of remapping counts even then", () => {
    expect(preflight(intelLabBefore, ["intel_iommu=on"]).refusals).toEqual([]);
    expect(interruptRemapping(parsePreflightSections({ ...intelLabBefore, interruptRemapping: "chips 3\n" })).state).toBe("on");
  });

  it("property: refused exactly when the IOMMU is on, no evidence of remapping exists and the key is not set", () => {
    const sections = fc.record({
      units: fc.constantFrom("", "dmar0 f0050da\n", "dmar0 f0050de\ndmar1 f0050de\n", "ivhd0 -\n"),
      chips: fc.nat(40),
      log: fc.constantFrom("", "readable\n", "readable\nlog AMD-Vi: Interrupt remapping enabled\n"),
      allow: fc.boolean(),
    });
    fc.assert(
      fc.property(sections, ({ units, chips, log, allow }) => {
        const verdict = preflight({ ...intelLab, iommuUnits: units, interruptRemapping: `chips ${chips}\n${log}` }, ["intel_iommu=on"], allow);
        const refused = verdict.refusals.some((r) => r.includes(ALLOW_UNSAFE_INTERRUPTS_KEY));
        expect(refused).toBe(units !== "" && chips === 0 && !log.includes("log ") && !allow);
        expect(verdict.refusals.every((r) => r.includes(KERNEL_ARGS_KEY) || r.includes(ALLOW_UNSAFE_INTERRUPTS_KEY))).toBe(true);
      }),
    );
  });
});

describe("iommuOnAtBoot and iommuArgsFor", () => {
  it("Intel: on with intel_iommu=on (the last on/off of the last arg) or by the kernel's default; AMD: whenever the firmware has IVRS", () => {
    const intel = parsePreflightSections(intelLabBefore);
    expect(iommuOnAtBoot(intel, ["intel_iommu=on", "iommu=pt"])).toBe(true);
    expect(iommuOnAtBoot(intel, ["quiet", "intel_iommu=on,igfx_off"])).toBe(true);
    expect(iommuOnAtBoot(intel, ["intel_iommu=off", "intel_iommu=on"])).toBe(true);
    expect(iommuOnAtBoot(intel, ["intel_iommu=on,off"])).toBe(false);
    expect(iommuOnAtBoot(intel, ["iommu=pt"])).toBe(false);
    expect(iommuOnAtBoot({ ...intel, kernelConfig: { file: "f", options: { CONFIG_INTEL_IOMMU_DEFAULT_ON: "y" } } }, [])).toBe(true);
    const amd = parsePreflightSections(amdDesktop);
    expect(iommuOnAtBoot(amd, ["iommu=pt"])).toBe(true);
    expect(iommuOnAtBoot(amd, ["amd_iommu=off"])).toBe(false);
    expect(iommuOnAtBoot({ ...amd, ivrsTable: false }, ["amd_iommu=on"])).toBe(false);
    expect(iommuOnAtBoot({ ...amd, ivrsTable: false }, ["intel_iommu=on"])).toBe(true);
    expect(iommuArgsFor("amd")).toEqual(["iommu=pt"]);
    expect(iommuArgsFor("intel")).toEqual(["intel_iommu=on", "iommu=pt"]);
  });
});
