// The stack files in stacks/ stay valid: each one's config, as the Pulumi CLI hands it to the program
// (structured values as JSON text, scalars as strings), passes parseStackConfig, which checks every
// key with the resources' own schemas, once the values set per installation are supplied.
import * as fs from "fs";
import * as path from "path";
import { hostdevProblems } from "../../../providers/libvirt/domainResource";
import { parseLspci, vendorDevice } from "../../../providers/vfioBinding/hostFacts";
import { parseStackConfig, StackConfig } from "../../../stacks/config";
import { referenceLspci, vfioSelectionDefaults } from "../vfioBinding/fixtures";
import { generateKeyPair } from "../../sshKeys";

// js-yaml ships with @pulumi/pulumi, which reads its own YAML with it.
const { load } = require("js-yaml") as { load(text: string): unknown };

const stackFile = (name: string) => fs.readFileSync(path.join(__dirname, "../../../stacks", name), "utf8");

/** The `config:` map as the program receives it: objects and lists as JSON, everything else as text. */
function programConfig(yaml: string): Record<string, string> {
  const { config } = load(yaml) as { config: Record<string, unknown> };
  return Object.fromEntries(Object.entries(config).map(([key, value]) => [key, typeof value === "object" ? JSON.stringify(value) : String(value)]));
}

/** The trial boot keys as a stack file that does not set them reads. */
const trialDefaults = { trialBoot: true, trialPanicSeconds: 10, trialWatchdogSeconds: 300 };
/** What the files leave to each installation: the host's pinned key and the login's key (a secret). */
const perInstallation = {
  hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
  sshPrivateKey: generateKeyPair("ed25519").private,
};
const secrets = new Set(["vfio-host:sshPrivateKey"]);

function checkedStack(name: string): StackConfig {
  const supplied = { "vfio-host:hostKey": perInstallation.hostKey, "vfio-host:sshPrivateKey": perInstallation.sshPrivateKey };
  return parseStackConfig({ ...programConfig(stackFile(name)), ...supplied }, secrets);
}

describe("stacks/Pulumi.alpine-homeassistant.yaml", () => {
  const yaml = stackFile("Pulumi.alpine-homeassistant.yaml");

  it("is the reference host: Intel IOMMU, extlinux with the VFIO modules, the four ICH10 USB controllers of group 4", () => {
    expect(checkedStack("Pulumi.alpine-homeassistant.yaml")).toEqual({
      ...trialDefaults,
      connection: {
        host: "192.0.2.10",
        port: 22,
        user: "root",
        hostKey: perInstallation.hostKey,
        privateKey: perInstallation.sshPrivateKey,
        insecureAcceptAnyHostKey: false,
        escalation: "auto",
        readyTimeoutSeconds: 300,
      },
      kernelArgs: ["intel_iommu=on", "iommu=pt"],
      removeKernelArgs: [],
      acknowledgeBootCriticalArgs: [],
      bootBackend: "extlinux",
      extlinuxModules: ["vfio", "vfio-pci", "vfio_iommu_type1", "vfio_virqfd"],
      vfio: { ...vfioSelectionDefaults, devices: ["8086:3a67", "8086:3a68", "8086:3a69", "8086:3a6c"], allowUnsafeInterrupts: true },
      reboot: "auto",
      rebootTimeoutSeconds: 900,
      libvirt: expect.any(Object),
    });
  });

  it("leaves the host key and the private key to the installation, and says how to set them", () => {
    expect(() => parseStackConfig(programConfig(yaml), new Set())).toThrow(
      /sshPrivateKey: is not set, and there is no other way to log in: set the secret `sshPrivateKey`[^\n]*\n\s+vfio-host:hostKey: is not set/,
    );
    expect(yaml).toContain("config set --secret sshPrivateKey");
    expect(yaml).toContain("config set hostKey");
  });

  it("describes the libvirt half as virt-install made it: packages, the default pool, the HAOS image, the guest with two controllers", () => {
    expect(checkedStack("Pulumi.alpine-homeassistant.yaml").libvirt).toMatchObject({
      packages: {
        packages: expect.arrayContaining(["libvirt-daemon", "qemu-img", "qemu-system-x86_64", "qemu-modules", "ovmf"]),
        services: ["libvirtd", "libvirt-guests"],
        modules: ["tun"],
      },
      pools: [{ name: "default", path: "/var/lib/libvirt/images", adopt: true }],
      volumes: [{ pool: "default", name: "haos_ova-7.5.qcow2", source: { url: expect.stringMatching(/\/7\.5\/haos_ova-7\.5\.qcow2\.xz$/) }, format: "qcow2" }],
      domains: {
        homeassistant: {
          name: "homeassistant",
          vcpus: 2,
          memoryMiB: 4096,
          boot: "uefi",
          disks: [{ pool: "default", volume: "haos_ova-7.5.qcow2", bus: "virtio" }],
          networks: [{ type: "bridge", bridge: "br0", mac: "52:54:00:c4:2d:4a" }],
          graphics: "none",
          video: "none",
          sound: "none",
          input: "none",
          memballoon: "none",
          hostdevs: ["0000:00:1a.0", "0000:00:1a.1"],
          autostart: true,
        },
      },
    });
  });

  it("gives the guest two of the controllers vfio-host:vfio binds, so on the reference host preview has it wait for the reboot", () => {
    const { config } = load(yaml) as { config: { "vfio-host:vfio": { devices: string[] }; "vfio-host:libvirt": { domains: { homeassistant: { hostdevs: string[] } } } } };
    const devices = parseLspci(referenceLspci);
    // What VfioBinding binds by ids: every device with one of them (its boundDevices).
    const bound = devices.filter((d) => config["vfio-host:vfio"].devices.includes(vendorDevice(d))).map((d) => d.address);
    const drivers = Object.fromEntries(devices.map((d) => [d.address, d.driver ?? ""]));
    const hostdevs = config["vfio-host:libvirt"].domains.homeassistant.hostdevs;
    expect(hostdevProblems(hostdevs, drivers, bound)).toEqual({ refusals: [], awaitingBoot: ["0000:00:1a.0", "0000:00:1a.1"] });
  });
});

describe("stacks/Pulumi.amd-grub.example.yaml", () => {
  it("is an AMD GRUB host handing one IOMMU group (a GPU and its audio function) to vfio-pci", () => {
    expect(checkedStack("Pulumi.amd-grub.example.yaml")).toMatchObject({
      connection: { host: "192.0.2.20" },
      kernelArgs: ["iommu=pt"],
      bootBackend: "grub",
      extlinuxModules: [],
      vfio: { ...vfioSelectionDefaults, iommuGroups: [14] },
      reboot: "auto",
    });
  });
});
