import { alpine515Kernel, debianKernel } from "../initramfsModules/fixtures";
import { labFacts, referenceFacts } from "../vfioBinding/fixtures";
import { parseKernelReleases } from "../../../providers/kernel/nextKernel";
import { parseModprobeKind, parseVfioHostSections } from "../../../providers/vfioBinding/readFacts";
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
      preflight: {
        vendor: "intel",
        vendorId: "GenuineIntel",
        acpi: true,
        dmarTable: true,
        ivrsTable: false,
        iommuUnits: [
          { name: "dmar0", ecap: "1000" },
          { name: "dmar1", ecap: "10a0" },
        ],
        remappedChips: 0,
        kernelLog: [],
        kernelConfig: { file: "/boot/config-lts", options: { CONFIG_INTEL_IOMMU: "y", CONFIG_IRQ_REMAP: "y" } },
        cmdline: referenceSections.cmdline.trim(),
      },
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

  it("keeps what it could not trace to PCI devices with the reason, and no warning (VfioBinding refuses, discovery reports)", () => {
    const reading = parseVfioHostSections(
      {
        ...labSections,
        kernel: "running 6.1.0-18-amd64\nnext 6.1.0-18-amd64\n",
        hostStorage: "mountinfo 22 1 0:31 / / rw - overlay overlay rw\n",
        sshPath: "",
      },
      "root@lab:22",
    );
    expect(reading.facts.hostNeeds).toEqual([
      { kind: "mount", name: "/", what: "/ on overlay overlay", controllers: [], unresolved: ["overlay is not a block device on the host"] },
      {
        kind: "ssh",
        name: "ssh",
        what: "the SSH session",
        controllers: [],
        unresolved: ["$SSH_CONNECTION is not set (sshd sets it; logging in through `su` or `sudo` drops it)"],
      },
    ]);
    expect(reading.warnings).toEqual([]);
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

