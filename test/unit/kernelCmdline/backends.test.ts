// KernelCmdline over the backends whose loader reads the edited files itself (systemd-boot's
// loader entries, GRUB's BLS entries on Fedora, hand-written syslinux configs): what auto picks, what a plan writes, that a
// second plan on the result changes nothing, that a revert gives the original bytes back, and
// that a run that died before recording its state is recognised from the backups.
import fc from "fast-check";
import { backends, BootFiles, SourceEdit } from "../../../providers/kernelCmdline/bootConfig";
import { describeKernelCmdlinePlan, KernelCmdlineState, planKernelCmdline } from "../../../providers/kernelCmdline/resource";
import { parsePreflightSections } from "../../../providers/kernel/preflight";
import { KernelCmdlineInputs } from "../../../providers/kernelCmdline/schema";
import { ensureArgs } from "./arbitraries";
import { debianExtlinuxConf, debianSystemdBootEntry, fedoraBlsEntry, fedoraDefaultGrub, rhel8BlsEntry, unraidSyslinuxCfg } from "./fixtures";

const ARGS = ["intel_iommu=on", "iommu=pt"];
const inputs = KernelCmdlineInputs.parse({ args: ARGS, remove: ["quiet"] });
const ENTRY = "/boot/efi/loader/entries/3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f-6.1.0-18-amd64.conf";
const OTHER_OS_ENTRY = "/boot/efi/loader/entries/0123456789abcdef0123456789abcdef-6.5.0-1-amd64.conf";
const otherOsEntry = debianSystemdBootEntry.replace(/3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f/g, "0123456789abcdef0123456789abcdef");
const CMDLINE = "root=UUID=6ad3a1f5-3b3c-4c4b-9b1f-3f1d2f0c1a2b ro quiet systemd.machine_id=3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f\n";

const sdBootHost: BootFiles = {
  dropIns: [],
  kernelCmdline: CMDLINE,
  procCmdline: `initrd=\\3f6d\\initrd BOOT_IMAGE=/linux ${CMDLINE}`,
  machineId: "3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f",
  loaderEntries: [
    { path: ENTRY, text: debianSystemdBootEntry },
    { path: OTHER_OS_ENTRY, text: otherOsEntry },
  ],
};

/** The host's files after the plan's edits were written. */
function applied(files: BootFiles, edits: readonly SourceEdit[]): BootFiles {
  const after = new Map(edits.map((e) => [e.path, e.after]));
  const swap = (list?: readonly { path: string; text: string }[]) => list?.map((f) => ({ ...f, text: after.get(f.path) ?? f.text }));
  return {
    ...files,
    defaults: after.get("/etc/default/grub") ?? files.defaults,
    kernelCmdline: after.get("/etc/kernel/cmdline") ?? files.kernelCmdline,
    loaderEntries: swap(files.loaderEntries),
    syslinux: swap(files.syslinux),
  };
}

/** The source files as a revert of `state` leaves them. */
function reverted(files: BootFiles, state: KernelCmdlineState): Map<string, string> {
  const b = backends[state.backend];
  const texts = new Map<string, string | undefined>([
    ["/etc/default/grub", files.defaults],
    ["/etc/kernel/cmdline", files.kernelCmdline],
    ...[...(files.loaderEntries ?? []), ...(files.syslinux ?? [])].map((f) => [f.path, f.text] as const),
  ]);
  return new Map(b.revert((path) => texts.get(path), state.owned).map((e) => [e.path, e.after]));
}

/** For any args: a second plan on the applied files is a no-op, and a revert gives `originals` back. */
function expectRoundTrips(host: BootFiles, originals: Map<string, string>): void {
  fc.assert(
    fc.property(ensureArgs, (args) => {
      const given = KernelCmdlineInputs.parse({ args });
      const first = planKernelCmdline(given, host, undefined);
      const after = applied(host, first.edits);
      const state: KernelCmdlineState = { backend: first.backend, owned: first.owned };
      expect(describeKernelCmdlinePlan(planKernelCmdline(given, after, state))).toEqual([]);
      expect(reverted(after, state)).toEqual(originals);
    }),
  );
}

describe("the systemd-boot backend", () => {
  const plan = planKernelCmdline(inputs, sdBootHost, undefined);

  it("is what auto picks on a host with loader entries and no other loader's files", () => {
    expect(plan.backend).toBe("systemd-boot");
  });

  it("edits /etc/kernel/cmdline and this installation's entry, not another one's, and runs no tool", () => {
    expect(describeKernelCmdlinePlan(plan)).toEqual([
      "backend systemd-boot (auto: the only loader whose files are here; which loader booted the host is not known)",
      "/etc/kernel/cmdline: - quiet",
      "/etc/kernel/cmdline: + intel_iommu=on",
      "/etc/kernel/cmdline: + iommu=pt",
      `${ENTRY}: - quiet`,
      `${ENTRY}: + intel_iommu=on`,
      `${ENTRY}: + iommu=pt`,
    ]);
    expect(plan.edits.map((e) => e.path)).toEqual(["/etc/kernel/cmdline", ENTRY]);
    const entry = plan.edits[1].after;
    expect(entry).toContain("options    root=UUID=6ad3a1f5-3b3c-4c4b-9b1f-3f1d2f0c1a2b ro systemd.machine_id=3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f intel_iommu=on iommu=pt\n");
    expect(entry.replace(/^options.*$/m, "")).toBe(debianSystemdBootEntry.replace(/^options.*$/m, ""));
    expect(plan.stale).toBe(true);
  });

  it("finds nothing to do once written, and a revert gives every file its bytes back", () => {
    const after = applied(sdBootHost, plan.edits);
    const state: KernelCmdlineState = { backend: plan.backend, owned: plan.owned };
    const again = planKernelCmdline(inputs, after, state);
    expect(describeKernelCmdlinePlan(again)).toEqual([]);
    expect(again.stale).toBe(false);
    expect(reverted(after, state)).toEqual(new Map([["/etc/kernel/cmdline", CMDLINE], [ENTRY, debianSystemdBootEntry]]));
  });

  it("owns what a run that died before recording its state wrote, from the backups", () => {
    const after = applied(sdBootHost, plan.edits);
    const backups = { "/etc/kernel/cmdline": CMDLINE, [ENTRY]: debianSystemdBootEntry };
    const adopted = planKernelCmdline(inputs, { ...after, backups }, undefined);
    expect(describeKernelCmdlinePlan(adopted)).toEqual([]);
    expect(reverted(after, { backend: adopted.backend, owned: adopted.owned })).toEqual(new Map([["/etc/kernel/cmdline", CMDLINE], [ENTRY, debianSystemdBootEntry]]));
  });

  it("starts /etc/kernel/cmdline from the running command line when it is missing, as kernel-install would", () => {
    const created = planKernelCmdline(inputs, { ...sdBootHost, kernelCmdline: undefined }, undefined);
    expect(created.edits[0]).toEqual({
      path: "/etc/kernel/cmdline",
      before: undefined,
      after: "root=UUID=6ad3a1f5-3b3c-4c4b-9b1f-3f1d2f0c1a2b ro systemd.machine_id=3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f intel_iommu=on iommu=pt\n",
    });
    // Its revert marks the file as the one it created, so destroy removes it when vfio-host's backup says it did not exist.
    const written = { ...applied(sdBootHost, created.edits), kernelCmdline: created.edits[0].after };
    const undo = backends["systemd-boot"].revert((path) => (path === "/etc/kernel/cmdline" ? written.kernelCmdline : written.loaderEntries?.find((e) => e.path === path)?.text), created.owned);
    expect(undo[0]).toMatchObject({ path: "/etc/kernel/cmdline", createdWith: true });
    expect(reverted(applied(sdBootHost, plan.edits), { backend: "systemd-boot", owned: plan.owned }).get("/etc/kernel/cmdline")).toBe(CMDLINE);
  });

  it("any args: apply then revert is the identity on every file, and a second plan is a no-op", () => {
    expectRoundTrips(sdBootHost, new Map([["/etc/kernel/cmdline", CMDLINE], [ENTRY, debianSystemdBootEntry]]));
  });
});

describe("the grubby backend (Fedora: GRUB reading BLS entries)", () => {
  const FEDORA_ENTRY = "/boot/loader/entries/2d1e8f0c7b3a4e5f9a6b1c0d8e7f6a5b-6.10.6-200.fc40.x86_64.conf";
  const fedora: BootFiles = {
    defaults: fedoraDefaultGrub,
    dropIns: [],
    procCmdline: "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.10.6-200.fc40.x86_64 root=/dev/mapper/vg0-root ro rd.lvm.lv=vg0/root",
    loaderEntries: [{ path: FEDORA_ENTRY, text: fedoraBlsEntry }],
    booted: { loader: "grubby-bls", evidence: ["/boot/grub2/grub.cfg runs blscfg: GRUB boots the BLS entries in /boot/loader/entries"] },
  };
  const plan = planKernelCmdline(inputs, fedora, undefined);
  const originals = new Map([["/etc/default/grub", fedoraDefaultGrub], [FEDORA_ENTRY, fedoraBlsEntry]]);

  it("is what auto picks on a host GRUB booted through blscfg, and edits GRUB_CMDLINE_LINUX and each entry in place", () => {
    expect(plan.backend).toBe("grubby");
    expect(describeKernelCmdlinePlan(plan)).toEqual([
      "backend grubby (auto: the only loader whose files are here and that booted the host; booted through grubby-bls: /boot/grub2/grub.cfg runs blscfg: GRUB boots the BLS entries in /boot/loader/entries)",
      "/etc/default/grub: + intel_iommu=on",
      "/etc/default/grub: + iommu=pt",
      `${FEDORA_ENTRY}: + intel_iommu=on`,
      `${FEDORA_ENTRY}: + iommu=pt`,
    ]);
    const [grub, entry] = plan.edits.map((e) => e.after);
    expect(grub).toBe(fedoraDefaultGrub.replace('crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M"', 'crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M intel_iommu=on iommu=pt"'));
    expect(entry).toBe(fedoraBlsEntry.replace("64G-:512M\n", "64G-:512M intel_iommu=on iommu=pt\n"));
    // No tool: GRUB's blscfg reads the entries at boot.
    expect(backends.grubby.regenerate).toBeUndefined();
  });

  it("finds nothing to do once written, and a revert gives every file its bytes back", () => {
    const after = applied(fedora, plan.edits);
    const state: KernelCmdlineState = { backend: plan.backend, owned: plan.owned };
    expect(describeKernelCmdlinePlan(planKernelCmdline(inputs, after, state))).toEqual([]);
    expect(backends.grubby.verify(after, ARGS, []).ok).toBe(true);
    expect(reverted(after, state)).toEqual(originals);
  });

  it("owns what a run that died before recording its state wrote, from the backups", () => {
    const after = applied(fedora, plan.edits);
    const adopted = planKernelCmdline(inputs, { ...after, backups: Object.fromEntries(originals) }, undefined);
    expect(describeKernelCmdlinePlan(adopted)).toEqual([]);
    expect(reverted(after, { backend: adopted.backend, owned: adopted.owned })).toEqual(originals);
  });

  it("edits /etc/kernel/cmdline too where the host has one, as kernel-install gives it to new kernels", () => {
    const withCmdline = { ...fedora, kernelCmdline: "root=/dev/mapper/vg0-root ro rd.lvm.lv=vg0/root\n" };
    const both = planKernelCmdline(inputs, withCmdline, undefined);
    expect(both.edits.map((e) => e.path)).toEqual(["/etc/default/grub", "/etc/kernel/cmdline", FEDORA_ENTRY]);
    const after = applied(withCmdline, both.edits);
    expect(after.kernelCmdline).toBe("root=/dev/mapper/vg0-root ro rd.lvm.lv=vg0/root intel_iommu=on iommu=pt\n");
    expect(backends.grubby.verify({ ...after, kernelCmdline: withCmdline.kernelCmdline }, ARGS, []).problems).toEqual([
      "/etc/kernel/cmdline lacks intel_iommu=on iommu=pt: kernels installed later would boot without them",
    ]);
    expect(reverted(after, { backend: both.backend, owned: both.owned }).get("/etc/kernel/cmdline")).toBe(withCmdline.kernelCmdline);
  });

  it("says what is missing when grub2-mkconfig would drop the args again", () => {
    const after = applied(fedora, plan.edits);
    expect(backends.grubby.verify({ ...after, defaults: fedoraDefaultGrub }, ARGS, []).problems).toEqual([
      "GRUB_CMDLINE_LINUX in /etc/default/grub lacks intel_iommu=on iommu=pt: grub2-mkconfig would rewrite the BLS entries without them",
    ]);
  });

  it("refuses RHEL 8's $kernelopts entries before writing anything, and the grub backend on a host that boots BLS entries", () => {
    expect(() => planKernelCmdline(inputs, { ...fedora, loaderEntries: [{ path: "/boot/loader/entries/x.conf", text: rhel8BlsEntry }] }, undefined)).toThrow(
      /^\/boot\/loader\/entries\/x.conf: options refers to \$kernelopts/,
    );
    expect(() => planKernelCmdline(KernelCmdlineInputs.parse({ args: ARGS, backend: "grub" }), fedora, undefined)).toThrow(
      /^backend: "grub" .* booted through GRUB reading BLS entries .*Set it to "grubby"$/,
    );
  });

  it("without knowing what booted, refuses to choose among GRUB, systemd-boot and BLS entries", () => {
    expect(() => planKernelCmdline(inputs, { ...fedora, booted: undefined }, undefined)).toThrow(
      /found the files of GRUB .* and systemd-boot .* and GRUB reading BLS entries .*; set backend to the one that boots it: "grub" if .*, "systemd-boot" if .*, "grubby" if the BLS entries in \/boot\/loader\/entries\/ is what boots/,
    );
  });

  it("any args: apply then revert is the identity on every file, and a second plan is a no-op", () => {
    expectRoundTrips(fedora, originals);
  });
});

describe("the syslinux backend", () => {
  const EXTLINUX = "/boot/extlinux/extlinux.conf";
  const host: BootFiles = { dropIns: [], syslinux: [{ path: EXTLINUX, text: debianExtlinuxConf }] };
  const plan = planKernelCmdline(inputs, host, undefined);

  it("is what auto picks on Debian's extlinux and edits each Linux label's APPEND in place", () => {
    expect(plan.backend).toBe("syslinux");
    expect(describeKernelCmdlinePlan(plan)).toEqual([
      "backend syslinux (auto: the only loader whose files are here; which loader booted the host is not known)",
      `${EXTLINUX}: LABEL debian: - quiet`,
      `${EXTLINUX}: LABEL debian: + intel_iommu=on`,
      `${EXTLINUX}: LABEL debian: + iommu=pt`,
      `${EXTLINUX}: LABEL debian-rescue: + intel_iommu=on`,
      `${EXTLINUX}: LABEL debian-rescue: + iommu=pt`,
    ]);
  });

  it("finds nothing to do once written, and a revert gives the original bytes back", () => {
    const after = applied(host, plan.edits);
    const state: KernelCmdlineState = { backend: plan.backend, owned: plan.owned };
    expect(describeKernelCmdlinePlan(planKernelCmdline(inputs, after, state))).toEqual([]);
    expect(reverted(after, state)).toEqual(new Map([[EXTLINUX, debianExtlinuxConf]]));
  });

  it("edits both of Unraid's configs, the BIOS one and the UEFI copy", () => {
    const unraid: BootFiles = {
      dropIns: [],
      syslinux: [
        { path: "/boot/syslinux/syslinux.cfg", text: unraidSyslinuxCfg },
        { path: "/boot/EFI/boot/syslinux.cfg", text: unraidSyslinuxCfg },
      ],
    };
    const both = planKernelCmdline(KernelCmdlineInputs.parse({ args: ARGS }), unraid, undefined);
    expect(both.edits.filter((e) => e.after !== e.before).map((e) => e.path)).toEqual(["/boot/syslinux/syslinux.cfg", "/boot/EFI/boot/syslinux.cfg"]);
  });
});

describe("auto with more than one loader's files", () => {
  it("refuses to guess and names each candidate", () => {
    expect(() => planKernelCmdline(inputs, { ...sdBootHost, defaults: "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n" }, undefined)).toThrow(
      /found the files of GRUB .* and systemd-boot .*; set backend to the one that boots it: "grub" if \/boot\/grub\/grub.cfg is what boots, "systemd-boot" if the loader entries/,
    );
  });
});

describe("the preflight, before any backend writes", () => {
  const sections = (acpiTables: string, cpuVendor: string) =>
    parsePreflightSections({ cpuVendor, acpiTables, iommuUnits: "", interruptRemapping: "chips 0\n", iommuKernelConfig: "", cmdline: "ro quiet" });

  it("refuses VT-d off in the firmware at preview, naming the fix", () => {
    expect(() => planKernelCmdline(inputs, { ...sdBootHost, preflight: sections("ACPI\n", "GenuineIntel\n") }, undefined)).toThrow(/VT-d is off in the firmware .*enable it in the BIOS setup/);
  });

  it("refuses amd_iommu=on, which the kernel does not know, on an AMD-Vi host", () => {
    const amd = KernelCmdlineInputs.parse({ args: ["amd_iommu=on", "iommu=pt"] });
    expect(() => planKernelCmdline(amd, { ...sdBootHost, preflight: sections("ACPI\nIVRS\n", "AuthenticAMD\n") }, undefined)).toThrow(/"amd_iommu=on", which the kernel does not know/);
  });

  it("says which backend it picked and why, with the preflight's notes, only when something changes", () => {
    const withKernelDefault = { ...sdBootHost, preflight: { ...sections("ACPI\nDMAR\n", "GenuineIntel\n"), kernelConfig: { file: "/boot/config-6.1.0-18-amd64", options: { CONFIG_INTEL_IOMMU_DEFAULT_ON: "y" } } } };
    const described = describeKernelCmdlinePlan(planKernelCmdline(inputs, withKernelDefault, undefined));
    expect(described[0]).toBe("backend systemd-boot (auto: the only loader whose files are here; which loader booted the host is not known)");
    expect(described[1]).toMatch(/^note: The kernel turns the Intel IOMMU on by itself \(CONFIG_INTEL_IOMMU_DEFAULT_ON=y in \/boot\/config-6.1.0-18-amd64\)/);
    const plan = planKernelCmdline(inputs, withKernelDefault, undefined);
    const after = { ...applied(sdBootHost, plan.edits), preflight: withKernelDefault.preflight };
    expect(describeKernelCmdlinePlan(planKernelCmdline(inputs, after, { backend: plan.backend, owned: plan.owned }))).toEqual([]);
  });
});
