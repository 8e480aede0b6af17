import { execFileSync } from "child_process";
import fc from "fast-check";
import { existsSync, readFileSync } from "fs";
import {
  BOOTED_LOADER_SNIPPET,
  BootedLoader,
  BootLoader,
  checkBackendBoots,
  decodeEfiString,
  detectBootedLoader,
  parseBootedLoaderFacts,
  parseProxmoxBootToolStatus,
} from "../../../providers/kernelCmdline/bootedLoader";
import { proxmoxStatusLegacy, proxmoxStatusUefi, proxmoxStatusUnconfigured } from "./fixtures";

/** An EFI variable as efivarfs gives it: 4 attribute bytes (NV+BS+RT), then the UTF-16LE string and its NUL. */
function efiVariableHex(value: string): string {
  return Buffer.concat([Buffer.from([0x06, 0, 0, 0]), Buffer.from(`${value}\0`, "utf16le")]).toString("hex");
}

interface HostFacts {
  efi?: boolean;
  efivars?: boolean;
  loaderInfo?: string;
  loaderEntrySelected?: string;
  present?: readonly string[];
  commands?: readonly string[];
  blscfg?: readonly string[];
  cmdline: string;
  proxmox?: string;
}

/** The section BOOTED_LOADER_SNIPPET prints on a host with these facts. */
function section(host: HostFacts): string {
  return [
    ...(host.efi ? ["efi"] : []),
    ...(host.efivars ? ["efivars"] : []),
    ...(host.loaderInfo ? [`efivar LoaderInfo ${efiVariableHex(host.loaderInfo)}`] : []),
    ...(host.loaderEntrySelected ? [`efivar LoaderEntrySelected ${efiVariableHex(host.loaderEntrySelected)}`] : []),
    ...(host.present ?? []).map((p) => `present ${p}`),
    ...(host.commands ?? []).map((c) => `command ${c}`),
    ...(host.blscfg ?? []).map((f) => `blscfg ${f}`),
    `cmdline ${host.cmdline}`,
    ...(host.proxmox ?? "").split("\n").filter((l) => l !== "").map((l) => `proxmox ${l}`),
    "",
  ].join("\n");
}

const detect = (host: HostFacts) => detectBootedLoader(parseBootedLoaderFacts(section(host)));

const DEBIAN_GRUB_FILES = ["/etc/default/grub", "/boot/grub/grub.cfg", "/boot/grub/grubenv"];
const GRUB_COMMANDS = ["update-grub", "grub-mkconfig"];

/** The hosts issue 14 names, each as its own install leaves it. */
const hosts: Record<string, { facts: HostFacts; loader: BootLoader }> = {
  "Debian 12, BIOS, GRUB": {
    facts: { present: DEBIAN_GRUB_FILES, commands: GRUB_COMMANDS, cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=6ad3a1f5 ro quiet" },
    loader: "grub",
  },
  "Debian 12, UEFI, GRUB": {
    facts: { efi: true, efivars: true, present: DEBIAN_GRUB_FILES, commands: GRUB_COMMANDS, cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=6ad3a1f5 ro quiet" },
    loader: "grub",
  },
  "Debian 12, systemd-boot (GRUB's files left from the install)": {
    facts: {
      efi: true,
      efivars: true,
      loaderInfo: "systemd-boot 252.22-1~deb12u1",
      loaderEntrySelected: "3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f-6.1.0-18-amd64.conf",
      present: [...DEBIAN_GRUB_FILES, "/etc/kernel/cmdline", "/boot/efi/loader/entries"],
      commands: ["bootctl", "kernel-install", ...GRUB_COMMANDS],
      cmdline: "root=UUID=6ad3a1f5 ro quiet systemd.machine_id=3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f",
    },
    loader: "systemd-boot",
  },
  "Arch, systemd-boot": {
    facts: {
      efi: true,
      efivars: true,
      loaderInfo: "systemd-boot 256.7-1-arch",
      loaderEntrySelected: "arch.conf",
      present: ["/boot/loader/entries"],
      commands: ["bootctl", "kernel-install"],
      cmdline: "initrd=\\initramfs-linux.img root=UUID=0a1b2c3d rw",
    },
    loader: "systemd-boot",
  },
  "Proxmox VE 8, ZFS root, UEFI (systemd-boot through proxmox-boot-tool, /etc/default/grub present)": {
    facts: {
      efi: true,
      efivars: true,
      loaderInfo: "systemd-boot 252.31-1~deb12u1",
      loaderEntrySelected: "proxmox-6.8.12-4-pve.conf",
      present: [...DEBIAN_GRUB_FILES, "/etc/kernel/cmdline", "/etc/kernel/proxmox-boot-uuids"],
      commands: ["bootctl", "proxmox-boot-tool", ...GRUB_COMMANDS],
      cmdline: "initrd=\\EFI\\proxmox\\6.8.12-4-pve\\initrd.img-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs",
      proxmox: proxmoxStatusUefi,
    },
    loader: "proxmox-boot-tool",
  },
  "Proxmox VE 8, ZFS root, legacy BIOS (GRUB through proxmox-boot-tool)": {
    facts: {
      present: [...DEBIAN_GRUB_FILES, "/etc/kernel/proxmox-boot-uuids"],
      commands: ["proxmox-boot-tool", ...GRUB_COMMANDS],
      cmdline: "BOOT_IMAGE=/vmlinuz-6.8.12-4-pve root=ZFS=/ROOT/pve-1 ro root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet",
      proxmox: proxmoxStatusLegacy,
    },
    loader: "grub",
  },
  "Proxmox VE 8, ext4/LVM, UEFI (plain GRUB)": {
    facts: {
      efi: true,
      efivars: true,
      present: DEBIAN_GRUB_FILES,
      commands: ["proxmox-boot-tool", ...GRUB_COMMANDS],
      cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet",
      proxmox: proxmoxStatusUnconfigured,
    },
    loader: "grub",
  },
  "Fedora 40, UEFI, GRUB with BLS entries and grubby": {
    facts: {
      efi: true,
      efivars: true,
      present: ["/etc/default/grub", "/boot/grub2/grub.cfg", "/boot/grub2/grubenv", "/boot/loader/entries"],
      commands: ["grubby", "grub2-mkconfig", "kernel-install"],
      blscfg: ["/boot/grub2/grub.cfg"],
      cmdline: "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.10.6-200.fc40.x86_64 root=/dev/mapper/vg0-root ro rd.lvm.lv=vg0/root",
    },
    loader: "grubby-bls",
  },
  "Alpine, BIOS, extlinux": {
    facts: {
      present: ["/etc/update-extlinux.conf", "/boot/extlinux.conf"],
      commands: ["update-extlinux", "extlinux"],
      cmdline: "BOOT_IMAGE=vmlinuz-lts root=UUID=6ad3a1f5 modules=sd-mod,usb-storage,ext4 quiet rootfstype=ext4 initrd=initramfs-lts",
    },
    loader: "extlinux",
  },
  "Unraid, BIOS, syslinux": {
    facts: { present: ["/boot/syslinux/syslinux.cfg"], cmdline: "BOOT_IMAGE=/bzimage initrd=/bzroot" },
    loader: "syslinux",
  },
  "Unraid, UEFI, syslinux.efi": {
    facts: { efi: true, efivars: true, present: ["/boot/syslinux/syslinux.cfg", "/boot/EFI/boot/syslinux.cfg"], cmdline: "BOOT_IMAGE=/bzimage initrd=/bzroot,/bzroot-gui" },
    loader: "syslinux",
  },
};

describe("detectBootedLoader on the hosts issue 14 names", () => {
  for (const [name, { facts, loader }] of Object.entries(hosts)) {
    it(`${name}: ${loader}`, () => {
      expect(detect(facts).loader).toBe(loader);
    });
  }

  it("says why on the Proxmox ZFS host, and refuses the grub backend there naming both and the fix", () => {
    const detected = detect(hosts["Proxmox VE 8, ZFS root, UEFI (systemd-boot through proxmox-boot-tool, /etc/default/grub present)"].facts);
    expect(detected.evidence).toEqual([
      "/sys/firmware/efi exists: the firmware booted through UEFI",
      "proxmox-boot-tool status: 5A1C-2F3B with uefi, 5A1C-8E21 with uefi",
      'EFI variable LoaderInfo is "systemd-boot 252.31-1~deb12u1", LoaderEntrySelected "proxmox-6.8.12-4-pve.conf"',
    ]);
    expect(checkBackendBoots("grub", detected)).toBe(
      'backend: "grub" (KernelCmdline `backend`, vfio-host:bootBackend in a host stack) edits GRUB\'s /etc/default/grub, but this host booted through ' +
        "systemd-boot, whose entries proxmox-boot-tool writes from /etc/kernel/cmdline (/sys/firmware/efi exists: the firmware booted through UEFI; " +
        'proxmox-boot-tool status: 5A1C-2F3B with uefi, 5A1C-8E21 with uefi; EFI variable LoaderInfo is "systemd-boot 252.31-1~deb12u1", ' +
        'LoaderEntrySelected "proxmox-6.8.12-4-pve.conf"), so the change would not reach the next boot. Set it to "proxmox-boot-tool"',
    );
    expect(checkBackendBoots("proxmox-boot-tool", detected)).toBeUndefined();
  });

  it("tells GRUB from extlinux by what the loader put on /proc/cmdline when both configs exist", () => {
    const both = { present: ["/boot/grub/grub.cfg", "/boot/extlinux/extlinux.conf"] };
    expect(detect({ ...both, cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=/dev/sda1" }).loader).toBe("grub");
    expect(detect({ ...both, cmdline: "BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=/dev/sda1 initrd=/boot/initrd.img-6.1.0-18-amd64" }).loader).toBe("extlinux");
    expect(detect({ ...both, cmdline: "root=/dev/sda1" })).toEqual({
      loader: "unknown",
      evidence: [
        "no /sys/firmware/efi: the firmware booted through BIOS",
        "GRUB's config exists: /boot/grub/grub.cfg",
        "syslinux/extlinux config exists: /boot/extlinux/extlinux.conf",
        "the configs of more than one loader exist and nothing says which one booted",
      ],
    });
  });

  it("does not rule systemd-boot out when the EFI variables cannot be read", () => {
    const detected = detect({ efi: true, present: ["/boot/grub/grub.cfg", "/boot/efi/loader/entries"], cmdline: "BOOT_IMAGE=/vmlinuz root=/dev/sda2" });
    expect(detected.loader).toBe("unknown");
    expect(detected.evidence).toContain("the EFI variables cannot be read (efivarfs not mounted), so systemd-boot cannot be ruled out");
  });

  it("knows nothing on a host without any loader's config", () => {
    expect(detect({ cmdline: "root=/dev/vda" }).loader).toBe("unknown");
  });
});

describe("checkBackendBoots", () => {
  const grub: BootedLoader = { loader: "grub", evidence: ["no /sys/firmware/efi: the firmware booted through BIOS"] };

  it("accepts a backend that edits what boots, and an unknown loader", () => {
    expect(checkBackendBoots("grub", grub)).toBeUndefined();
    expect(checkBackendBoots("syslinux", { loader: "extlinux", evidence: [] })).toBeUndefined();
    expect(checkBackendBoots("extlinux", { loader: "unknown", evidence: [] })).toBeUndefined();
  });

  it("throws on a backend name it does not know, which is a caller's mistake", () => {
    expect(() => checkBackendBoots("auto", grub)).toThrow('checkBackendBoots: no backend "auto"; pass the resolved one');
  });

  const backends = ["grub", "extlinux", "syslinux", "systemd-boot", "proxmox-boot-tool", "grubby"];
  const loaders: BootLoader[] = ["grub", "systemd-boot", "proxmox-boot-tool", "grubby-bls", "extlinux", "syslinux"];

  it("refuses, naming the key and a backend that fits, exactly when the backend does not edit the booted loader's config", () => {
    fc.assert(
      fc.property(fc.constantFrom(...backends), fc.constantFrom(...loaders), fc.array(fc.string({ maxLength: 20 }), { maxLength: 3 }), (backend, loader, evidence) => {
        const refusal = checkBackendBoots(backend, { loader, evidence });
        const fitting = backends.filter((b) => checkBackendBoots(b, { loader, evidence }) === undefined);
        expect(fitting.length).toBeGreaterThan(0);
        if (fitting.includes(backend)) return expect(refusal).toBeUndefined();
        expect(refusal).toContain(`backend: "${backend}"`);
        expect(refusal).toContain("vfio-host:bootBackend");
        expect(refusal).toContain(evidence.join("; "));
        expect(fitting.every((b) => refusal?.includes(`"${b}"`))).toBe(true);
      }),
    );
  });
});

const TRACE_FILES = [
  ...DEBIAN_GRUB_FILES,
  "/boot/grub2/grub.cfg",
  "/etc/kernel/cmdline",
  "/etc/kernel/proxmox-boot-uuids",
  "/etc/update-extlinux.conf",
  "/boot/extlinux.conf",
  "/boot/extlinux/extlinux.conf",
  "/boot/syslinux/syslinux.cfg",
  "/boot/loader/entries",
];
const COMMANDS = ["bootctl", "kernel-install", "proxmox-boot-tool", "grubby", "update-grub", "update-extlinux"];

const anyHost: fc.Arbitrary<HostFacts> = fc.record({
  efi: fc.boolean(),
  efivars: fc.boolean(),
  present: fc.subarray(TRACE_FILES),
  commands: fc.subarray(COMMANDS),
  blscfg: fc.subarray(["/boot/grub2/grub.cfg"]),
  cmdline: fc.constantFrom("root=/dev/sda1", "BOOT_IMAGE=/vmlinuz root=/dev/sda1", "BOOT_IMAGE=vmlinuz-lts initrd=initramfs-lts root=/dev/sda1"),
  proxmox: fc.constantFrom(undefined, proxmoxStatusUefi, proxmoxStatusLegacy, proxmoxStatusUnconfigured),
});

describe("detectBootedLoader properties", () => {
  it("never picks GRUB or syslinux when systemd-boot says it booted, whatever other files exist", () => {
    fc.assert(
      fc.property(anyHost, (host) => {
        const loader = detect({ ...host, efi: true, efivars: true, loaderInfo: "systemd-boot 252.22-1~deb12u1" }).loader;
        expect(["systemd-boot", "proxmox-boot-tool"]).toContain(loader);
      }),
    );
  });

  it("never answers systemd-boot or proxmox-boot-tool on a BIOS host", () => {
    fc.assert(
      fc.property(anyHost, (host) => {
        expect(["systemd-boot", "proxmox-boot-tool"]).not.toContain(detect({ ...host, efi: false, efivars: false }).loader);
      }),
    );
  });

  it("does not depend on the order the host listed its files and commands in", () => {
    fc.assert(
      fc.property(anyHost, (host) => {
        const reversed = { ...host, present: [...(host.present ?? [])].reverse(), commands: [...(host.commands ?? [])].reverse() };
        expect(detect(reversed).loader).toBe(detect(host).loader);
      }),
    );
  });
});

describe("reading the facts", () => {
  it("decodes EFI variables: attributes skipped, UTF-16LE up to the NUL", () => {
    expect(decodeEfiString(efiVariableHex("systemd-boot 252.22-1~deb12u1"))).toBe("systemd-boot 252.22-1~deb12u1");
    expect(decodeEfiString("06000000" + Buffer.from("GRUB 2.12", "utf16le").toString("hex"))).toBe("GRUB 2.12");
  });

  it("reads proxmox-boot-tool status: which ESPs, with which loader, or none", () => {
    expect(parseProxmoxBootToolStatus(proxmoxStatusUefi)).toEqual({
      configured: true,
      esps: [
        { uuid: "5A1C-2F3B", modes: ["uefi"] },
        { uuid: "5A1C-8E21", modes: ["uefi"] },
      ],
    });
    expect(parseProxmoxBootToolStatus(proxmoxStatusLegacy).esps.map((e) => e.modes)).toEqual([["grub"], ["grub"]]);
    expect(parseProxmoxBootToolStatus("ABCD-1234 is configured with: uefi (versions: 6.8.12-4-pve), grub (versions: 6.8.12-4-pve)\n").esps[0].modes).toEqual(["uefi", "grub"]);
    expect(parseProxmoxBootToolStatus(proxmoxStatusUnconfigured)).toEqual({ configured: false, esps: [] });
  });

  it("the snippet runs under sh and reads this machine as it is (read only)", () => {
    const facts = parseBootedLoaderFacts(execFileSync("sh", ["-c", BOOTED_LOADER_SNIPPET]).toString("utf8"));
    expect(facts.efi).toBe(existsSync("/sys/firmware/efi"));
    expect(facts.procCmdline).toBe(readFileSync("/proc/cmdline", "utf8").trimEnd());
    expect(facts.present.every((path) => existsSync(path))).toBe(true);
    expect(facts.present.includes("/etc/default/grub")).toBe(existsSync("/etc/default/grub"));
    expect(facts.proxmoxBootTool === undefined).toBe(!facts.commands.includes("proxmox-boot-tool"));
  });
});
