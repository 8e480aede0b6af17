import { KernelCmdlineInputs, resolveBootBackend } from "../../../providers/kernelCmdline/schema";

const messages = (input: unknown) => {
  const result = KernelCmdlineInputs.safeParse(input);
  return result.success ? [] : result.error.issues.map((issue) => issue.message);
};

describe("KernelCmdlineInputs", () => {
  it("accepts the reference host's inputs and fills defaults", () => {
    expect(KernelCmdlineInputs.parse({ args: ["intel_iommu=on", "iommu=pt"], modules: ["vfio", "vfio-pci"] })).toEqual({
      args: ["intel_iommu=on", "iommu=pt"],
      remove: [],
      backend: "auto",
      modules: ["vfio", "vfio-pci"],
      acknowledgeBootCritical: [],
      trial: false,
    });
  });

  it("rejects args with spaces, or that are not key or key=value, with an example", () => {
    expect(messages({ args: ["intel_iommu = on", "--", "=on"] })).toEqual([
      'args: "intel_iommu = on" is not a kernel argument; write key or key=value with no spaces, quotes, backslashes, $ or `, e.g. "intel_iommu=on"',
      'args: "--" is not a kernel argument; write key or key=value with no spaces, quotes, backslashes, $ or `, e.g. "intel_iommu=on"',
      'args: "=on" is not a kernel argument; write key or key=value with no spaces, quotes, backslashes, $ or `, e.g. "intel_iommu=on"',
    ]);
  });

  const grubSyntax = (arg: string, character: string) =>
    `args (vfio-host:kernelArgs): ${JSON.stringify(arg)} contains ${JSON.stringify(character)}, which grub-mkconfig copies unquoted into grub.cfg, ` +
    "where GRUB's script parser reads it as syntax, not as part of the argument; write the argument without it";

  it.each([
    ["console=ttyS0;reboot", ";"],
    ["video=efifb:off|x", "|"],
    ["a=b&c", "&"],
    ["a=<b", "<"],
    ["a=b>c", ">"],
    ["a={b", "{"],
    ["a=b}", "}"],
    ["a=${x}", "$"],
    ["a=`id`", "`"],
    ['foo="a b"', '"'],
    ["a='b'", "'"],
    ["a=b\\c", "\\"],
    ["a=b\nc", "\n"],
  ])("rejects %j, naming vfio-host:kernelArgs and the GRUB-script character", (arg, character) => {
    expect(messages({ args: ["iommu=pt", arg] })).toEqual([grubSyntax(arg, character)]);
  });

  it("accepts args whose values carry the characters kernel parameters use", () => {
    const args = ["vfio_pci.ids=8086:3a67,8086:3a68", "video=efifb:off", "pcie_aspm=off", "isolcpus=2-5", "acpi_osi=!Windows_2012", "console=ttyS0,115200n8"];
    expect(messages({ args })).toEqual([]);
  });

  it("rejects a module option with the dashed module name", () => {
    expect(messages({ args: ["vfio-pci.ids=8086:3a67"] })).toEqual([
      'args: "vfio-pci.ids=8086:3a67" names the module with a dash; module options on the kernel command line need the underscore name (busybox modprobe matches "vfio_pci", not "vfio-pci"), write "vfio_pci.ids=8086:3a67"',
    ]);
  });

  it("rejects two args with one key", () => {
    expect(messages({ args: ["iommu=pt", "iommu=soft"] })).toEqual(['args: "iommu=pt" and "iommu=soft" set the same key; keep one, e.g. "iommu=pt"']);
  });

  it("rejects `remove` naming a key that `args` sets", () => {
    expect(messages({ args: ["intel_iommu=on"], remove: ["intel_iommu"] })).toEqual([
      'remove: "intel_iommu" names the key of "intel_iommu=on" in `args`, which already replaces any other value of it; drop "intel_iommu" from `remove`',
    ]);
  });

  it("rejects an empty args list, an unknown backend and module names with spaces", () => {
    expect(messages({ args: [], backend: "lilo", modules: ["vfio pci"] })).toEqual([
      'args: is empty; list the arguments this resource owns, e.g. ["intel_iommu=on", "iommu=pt"]',
      'backend: "lilo" must be "auto", "grub", "extlinux", "systemd-boot", "proxmox-boot-tool", "grubby" or "syslinux"',
      'modules: "vfio pci" is not a module name; write it as modprobe does, e.g. "vfio-pci"',
    ]);
  });

  it("rejects modules with the grub backend", () => {
    expect(messages({ args: ["iommu=pt"], backend: "grub", modules: ["vfio"] })).toEqual([
      'modules: only the extlinux backend (Alpine\'s update-extlinux) puts modules= on the kernel command line; with any other backend list the modules in an InitramfsModules resource instead, or set backend: "extlinux"',
    ]);
  });

  it("names unknown keys", () => {
    expect(messages({ args: ["iommu=pt"], arguments: [] })).toEqual([
      "Unknown KernelCmdline input `arguments`; the inputs are args, remove, backend, modules, acknowledgeBootCritical and trial",
    ]);
  });

  it("refuses root=, init= and rd.* in args or remove unless acknowledged, naming the key that acknowledges", () => {
    expect(messages({ args: ["iommu=pt", "root=/dev/sda2", "init=/bin/sh", "rd.luks.uuid=1234"], remove: ["rd.lvm.lv", "rootflags"] })).toEqual([
      'args: "root=/dev/sda2" sets root=, which decides how the host finds and starts its root filesystem: a wrong value leaves it unbootable. ' +
        'If that is what you mean, add "root" to acknowledgeBootCritical (vfio-host:acknowledgeBootCriticalArgs in a host stack)',
      'args: "init=/bin/sh" sets init=, which decides how the host finds and starts its root filesystem: a wrong value leaves it unbootable. ' +
        'If that is what you mean, add "init" to acknowledgeBootCritical (vfio-host:acknowledgeBootCriticalArgs in a host stack)',
      'args: "rd.luks.uuid=1234" sets rd.luks.uuid=, which decides how the host finds and starts its root filesystem: a wrong value leaves it unbootable. ' +
        'If that is what you mean, add "rd.luks.uuid" to acknowledgeBootCritical (vfio-host:acknowledgeBootCriticalArgs in a host stack)',
      'remove: "rd.lvm.lv" takes off rd.lvm.lv=, which decides how the host finds and starts its root filesystem: a wrong value leaves it unbootable. ' +
        'If that is what you mean, add "rd.lvm.lv" to acknowledgeBootCritical (vfio-host:acknowledgeBootCriticalArgs in a host stack)',
      'remove: "rootflags" takes off rootflags=, which decides how the host finds and starts its root filesystem: a wrong value leaves it unbootable. ' +
        'If that is what you mean, add "rootflags" to acknowledgeBootCritical (vfio-host:acknowledgeBootCriticalArgs in a host stack)',
    ]);
    expect(messages({ args: ["root=/dev/sda2", "rd.luks.uuid=1234"], remove: ["init"], acknowledgeBootCritical: ["root", "rd.luks.uuid", "init"] })).toEqual([]);
  });

  it("refuses an acknowledgement that acknowledges nothing", () => {
    expect(messages({ args: ["iommu=pt"], acknowledgeBootCritical: ["root", "iommu"] })).toEqual([
      'acknowledgeBootCritical (vfio-host:acknowledgeBootCriticalArgs in a host stack): "root" acknowledges nothing (no boot-critical key of that name in args or remove); drop it, so that a later root= is not acknowledged in advance',
      'acknowledgeBootCritical (vfio-host:acknowledgeBootCriticalArgs in a host stack): "iommu" acknowledges nothing (no boot-critical key of that name in args or remove); drop it, so that a later iommu= is not acknowledged in advance',
    ]);
  });
});

describe("resolveBootBackend", () => {
  const inputs = { backend: "auto" as const, modules: [] };
  const grubHost = { defaults: "", dropIns: [] };
  const alpineHost = { extlinuxDefaults: "", dropIns: [] };
  const bothHost = { defaults: "", extlinuxDefaults: "", dropIns: [] };
  const bareHost = { dropIns: [] };

  it("picks the bootloader the host has", () => {
    expect(resolveBootBackend(inputs, grubHost).backend).toBe("grub");
    expect(resolveBootBackend(inputs, alpineHost).backend).toBe("extlinux");
  });

  // Proxmox VE on ZFS with UEFI: /etc/default/grub is installed, but systemd-boot boots, through proxmox-boot-tool.
  const proxmoxZfs = {
    defaults: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n',
    kernelCmdline: "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n",
    dropIns: [],
    proxmoxBootTool: { configured: true, esps: [{ uuid: "A1B2-C3D4", modes: ["uefi" as const] }] },
    booted: { loader: "proxmox-boot-tool" as const, evidence: ["LoaderInfo: systemd-boot 252.31-1~deb12u1", "proxmox-boot-tool manages ESP A1B2-C3D4 (uefi)"] },
  };

  it("edits only what boots: on Proxmox ZFS/UEFI auto takes proxmox-boot-tool over the /etc/default/grub that is also there", () => {
    expect(resolveBootBackend(inputs, proxmoxZfs)).toEqual({
      backend: "proxmox-boot-tool",
      why: "auto: the only loader whose files are here and that booted the host; booted through proxmox-boot-tool: LoaderInfo: systemd-boot 252.31-1~deb12u1; proxmox-boot-tool manages ESP A1B2-C3D4 (uefi)",
    });
  });

  it("refuses an explicit backend that does not boot the host, naming both and the key", () => {
    expect(() => resolveBootBackend({ backend: "grub", modules: [] }, proxmoxZfs)).toThrow(
      /^backend: "grub" \(KernelCmdline `backend`, vfio-host:bootBackend in a host stack\) edits GRUB's \/etc\/default\/grub, but this host booted through .*Set it to "proxmox-boot-tool"$/,
    );
  });

  it("refuses auto when the only files found belong to a loader that did not boot the host", () => {
    const grubFilesOnly = { ...proxmoxZfs, kernelCmdline: undefined, proxmoxBootTool: undefined };
    expect(() => resolveBootBackend(inputs, grubFilesOnly)).toThrow(/found the files of GRUB .* but it booted through proxmox-boot-tool: .* so an edit there would not reach the next boot/);
  });

  it("refuses to guess between two", () => {
    expect(() => resolveBootBackend(inputs, bothHost)).toThrow(
      'backend: "auto" found the files of GRUB (/etc/default/grub, update-grub) and Alpine\'s extlinux (/etc/update-extlinux.conf, update-extlinux) on the host; ' +
        'set backend to the one that boots it: "grub" if /boot/grub/grub.cfg is what boots, "extlinux" if /boot/extlinux.conf is what boots',
    );
  });

  it("refuses a host with neither", () => {
    expect(() => resolveBootBackend(inputs, bareHost)).toThrow(
      'backend: "auto" found the files of none of GRUB (/etc/default/grub, update-grub); Alpine\'s extlinux (/etc/update-extlinux.conf, update-extlinux); ' +
        "systemd-boot (/etc/kernel/cmdline and the loader entries kernel-install wrote); proxmox-boot-tool (/etc/kernel/cmdline, proxmox-boot-tool refresh); GRUB reading BLS entries (GRUB_CMDLINE_LINUX in /etc/default/grub and /boot/loader/entries/*.conf, as grubby edits them); syslinux/extlinux (APPEND in /boot/extlinux/extlinux.conf or " +
        "/boot/syslinux/syslinux.cfg or /boot/EFI/boot/syslinux.cfg or /boot/syslinux.cfg) on the host; install the bootloader's package, or manage the kernel command line another way",
    );
  });

  it("refuses an explicit backend whose file is missing", () => {
    expect(() => resolveBootBackend({ backend: "extlinux", modules: [] }, grubHost)).toThrow(
      'backend: "extlinux" but the host has no /etc/update-extlinux.conf; install syslinux (Alpine: apk add syslinux), or use backend: "auto"',
    );
  });

  it("refuses modules when auto resolves to GRUB", () => {
    expect(() => resolveBootBackend({ backend: "auto", modules: ["vfio"] }, grubHost)).toThrow(
      "modules: only the extlinux backend",
    );
  });
});
