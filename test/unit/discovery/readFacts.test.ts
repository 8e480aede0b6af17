import { alpine515Kernel, debianKernel } from "../initramfsModules/fixtures";
import { labFacts, referenceFacts } from "../vfioBinding/fixtures";
import { parseKernelReleases } from "../../../providers/initramfsModules/nextKernel";
import {
  parseModprobeKind,
  parseRootDisks,
  parseSshNic,
  parseVfioHostSections,
} from "../../../providers/vfioBinding/readFacts";
import { labSections, referenceSections } from "./fixtures";

const { iommuEnabledAtNextBoot: _reference, ...referenceHostFacts } = referenceFacts;
const { iommuEnabledAtNextBoot: _lab, ...labHostFacts } = labFacts;

describe("parseVfioHostSections", () => {
  it("reads the reference Alpine host: ICH10 groups, AHCI root, e1000e under SSH, busybox modprobe", () => {
    expect(parseVfioHostSections(referenceSections, "root@reference:22")).toEqual({
      facts: referenceHostFacts,
      kernel: { ...alpine515Kernel, builtin: {} },
      runningKernel: "5.15.74-0-lts",
      modprobe: "busybox",
      cmdline: referenceSections.cmdline.trim(),
      bootId: "4f3c1a8e-7d2b-4c55-9a61-0b8e2d7f6c93",
      warnings: [],
    });
  });

  it("reads the lab: the kernel that boots next, not the running one, and kmod", () => {
    const reading = parseVfioHostSections(labSections, "root@lab:22");
    expect(reading.facts).toEqual(labHostFacts);
    expect(reading.kernel).toEqual(debianKernel);
    expect(reading).toMatchObject({ runningKernel: "6.1.0-17-amd64", modprobe: "kmod" });
    expect(reading.warnings).toEqual(["root@lab:22: runs kernel 6.1.0-17-amd64 but boots 6.1.0-18-amd64 next; its modules are the ones that count"]);
  });

  it("refuses a host whose lspci lists fewer devices than sysfs, naming the package", () => {
    expect(() => parseVfioHostSections({ ...labSections, tools: "ip\n", lspci: "" }, "root@lab:22")).toThrow(
      "root@lab:22: lspci is not installed, so nothing names the 11 PCI devices in /sys/bus/pci/devices; " +
        "install pciutils on the host (apt install pciutils, apk add pciutils: busybox's lspci lacks -D, -nn and -k)",
    );
    const busyboxLspci = "00:1d.0 Class 0c03: 8086:2934\n";
    expect(() => parseVfioHostSections({ ...labSections, lspci: busyboxLspci }, "root@lab:22")).toThrow(
      "root@lab:22: `lspci -Dnnk` does not list 11 of the 11 PCI devices in /sys/bus/pci/devices (e.g. 0000:00:00.0); install pciutils",
    );
  });

  it("says which host-critical facts it could not establish, and why", () => {
    const reading = parseVfioHostSections(
      { ...labSections, kernel: "running 6.1.0-18-amd64\nnext 6.1.0-18-amd64\n", rootDisks: "source overlay\n", sshNic: "" },
      "root@lab:22",
    );
    expect(reading.facts).toMatchObject({ rootFilesystemControllers: [], sshNicAddresses: [] });
    expect(reading.warnings).toEqual([
      "root@lab:22: the root filesystem (overlay) leads to no disk on a PCI controller, so no controller is protected as the root disk's; " +
        "check by hand that the selection does not hold it (`findmnt /`, `lsblk -s`)",
      "root@lab:22: cannot tell which NIC carries this SSH session: $SSH_CONNECTION is not set; make sure the selection does not hold it",
    ]);
    const why = (sshNic: string, tools = "lspci\nip\n") =>
      parseVfioHostSections({ ...labSections, tools, sshNic }, "h").warnings.find((w) => w.includes("SSH session"));
    expect(why("client 10.0.2.2\n", "lspci\n")).toContain("`ip` is not installed (iproute2)");
    expect(why("client 10.0.2.2\nroute \n")).toContain("`ip route get 10.0.2.2` named no interface");
    expect(why("client 10.0.2.2\nroute wg0\n")).toContain("wg0 has no PCI device beneath it (a virtual interface)");
  });
});

describe("parseRootDisks", () => {
  it("collects the controllers of every disk under LVM on dm-crypt on RAID, once each", () => {
    const lvmOnRaid = [
      "source /dev/mapper/vg0-root",
      "disk /sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1",
      "disk /sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme1n1",
      "disk /sys/devices/pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/sda",
      "",
    ].join("\n");
    expect(parseRootDisks(lvmOnRaid)).toEqual({ source: "/dev/mapper/vg0-root", controllers: ["0000:00:17.0", "0000:3d:00.0"], offPci: [] });
  });

  it("names the USB controller of a root filesystem on a USB stick", () => {
    const usbStick = "source /dev/sdb2\ndisk /sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb\n";
    expect(parseRootDisks(usbStick).controllers).toEqual(["0000:00:14.0"]);
  });

  it("keeps disks that are not on PCI apart", () => {
    expect(parseRootDisks("source /dev/zram0\ndisk /sys/devices/virtual/block/zram0\n")).toEqual({
      source: "/dev/zram0",
      controllers: [],
      offPci: ["/sys/devices/virtual/block/zram0"],
    });
  });
});

describe("parseSshNic", () => {
  it("follows a bridge over a bond to its ports", () => {
    const text = [
      "client 192.168.1.20",
      "route br0",
      "nic enp3s0f0 /sys/devices/pci0000:00/0000:00:01.1/0000:03:00.0",
      "nic enp3s0f1 /sys/devices/pci0000:00/0000:00:01.1/0000:03:00.1",
      "",
    ].join("\n");
    expect(parseSshNic(text)).toEqual({
      client: "192.168.1.20",
      route: "br0",
      nics: [
        { name: "enp3s0f0", address: "0000:03:00.0" },
        { name: "enp3s0f1", address: "0000:03:00.1" },
      ],
    });
  });

  it("is empty when sshd set no SSH_CONNECTION", () => {
    expect(parseSshNic("")).toEqual({ nics: [] });
  });
});

describe("parseKernelReleases", () => {
  it("falls back to the running kernel", () => {
    expect(parseKernelReleases("running 6.1.0-18-amd64\nnext 6.1.0-21-amd64\n")).toEqual({ running: "6.1.0-18-amd64", next: "6.1.0-21-amd64" });
    expect(parseKernelReleases("running 6.6.58-0-lts\nnext \n")).toEqual({ running: "6.6.58-0-lts", next: "6.6.58-0-lts" });
  });
});

describe("parseModprobeKind", () => {
  it("says busybox on Alpine even where kmod is installed", () => {
    expect(parseModprobeKind("alpine 3.20.3\nmodprobe kmod version 32\n")).toMatchObject({ kind: "busybox", known: true });
  });

  it("tells kmod from busybox by --version", () => {
    expect(parseModprobeKind("modprobe kmod version 30 +ZSTD +XZ\n")).toMatchObject({ kind: "kmod", known: true });
    expect(parseModprobeKind("modprobe modprobe: unrecognized option '--version' BusyBox v1.36.1 multi-call binary.\n")).toMatchObject({
      kind: "busybox",
      known: true,
    });
  });

  it("assumes kmod, and says so, when modprobe is missing", () => {
    const reading = parseVfioHostSections({ ...labSections, modprobe: "modprobe sh: 1: modprobe: not found\n" }, "h");
    expect(reading.modprobe).toBe("kmod");
    expect(reading.warnings).toContain('h: cannot tell which modprobe the initramfs runs (`modprobe --version` said "sh: 1: modprobe: not found"); assuming kmod');
  });
});

