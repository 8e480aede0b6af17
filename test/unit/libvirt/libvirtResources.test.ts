import { describeFieldChange, explicitFirmware, hostdevProblems, parsePciDrivers, parseVolumesSection } from "../../../providers/libvirt/domainResource";
import { checkLibvirtHost } from "../../../providers/libvirt/libvirtHostResource";
import { parsePoolsSection } from "../../../providers/libvirt/libvirtResource";

// `virsh vol-dumpxml --pool e2e --vol e2e-disk.qcow2` on the lab (Debian 12, libvirt 9.0).
const VOLUME_XML = `<volume type='file'>
  <name>e2e-disk.qcow2</name>
  <key>/var/lib/vfio-host/e2e-pool/e2e-disk.qcow2</key>
  <capacity unit='bytes'>67108864</capacity>
  <allocation unit='bytes'>200704</allocation>
  <physical unit='bytes'>196616</physical>
  <target>
    <path>/var/lib/vfio-host/e2e-pool/e2e-disk.qcow2</path>
    <format type='qcow2'/>
    <permissions>
      <mode>0644</mode>
      <owner>0</owner>
      <group>0</group>
    </permissions>
    <timestamps>
      <atime>1795609147.004000000</atime>
      <mtime>1795609146.144000000</mtime>
      <ctime>1795609146.552000000</ctime>
      <btime>0</btime>
    </timestamps>
    <compat>1.1</compat>
    <clusterSize unit='B'>65536</clusterSize>
    <features/>
  </target>
</volume>
`;

const POOL_XML = `<pool type='dir'>
  <name>e2e</name>
  <uuid>7c1d1e0a-5b8e-4a43-9f7e-2b1f0c6d9a11</uuid>
  <target>
    <path>/var/lib/vfio-host/e2e-pool</path>
  </target>
</pool>
`;
const POOL_INFO = "Name:           e2e\nUUID:           7c1d1e0a-5b8e-4a43-9f7e-2b1f0c6d9a11\nState:          running\nPersistent:     yes\nAutostart:      yes\n\n";

describe("fact sections", () => {
  it("read every pool, skipping one undefined between the list and its dumpxml", () => {
    expect(parsePoolsSection(`\0e2e\0${POOL_XML}\0${POOL_INFO}\0gone\0\0`)).toEqual([
      { name: "e2e", uuid: "7c1d1e0a-5b8e-4a43-9f7e-2b1f0c6d9a11", type: "dir", targetPath: "/var/lib/vfio-host/e2e-pool", state: "running", autostart: true },
    ]);
    expect(parsePoolsSection("")).toEqual([]);
  });

  it("read the volumes a domain names, leaving out those the pool does not have", () => {
    expect(parseVolumesSection(`\0e2e/e2e-disk.qcow2\0${VOLUME_XML}\0e2e/missing.raw\0`)).toEqual([
      { pool: "e2e", name: "e2e-disk.qcow2", path: "/var/lib/vfio-host/e2e-pool/e2e-disk.qcow2", format: "qcow2" },
    ]);
  });

  it("read each PCI device's driver, none, or that the device does not exist", () => {
    expect(parsePciDrivers("0000:00:1d.0 present vfio-pci\n0000:00:1d.1 present \n0000:00:1e.5 absent\n")).toEqual({
      "0000:00:1d.0": "vfio-pci",
      "0000:00:1d.1": "",
      "0000:00:1e.5": undefined,
    });
  });

  it("name OVMF explicitly only for a libvirt that cannot select firmware itself", () => {
    const ovmf = ["/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"];
    expect(explicitFirmware("<domainCapabilities><os supported='yes'><enum name='firmware'><value>efi</value></enum>", ovmf)).toBeUndefined();
    expect(explicitFirmware("<domainCapabilities><os supported='yes'><loader supported='yes'>", ovmf)).toEqual({
      loader: "/usr/share/OVMF/OVMF_CODE_4M.fd",
      nvramTemplate: "/usr/share/OVMF/OVMF_VARS_4M.fd",
    });
    expect(explicitFirmware("", ovmf)).toBeUndefined();
  });
});

describe("hostdevProblems", () => {
  const drivers = { "0000:00:1d.0": "vfio-pci", "0000:00:1d.1": "uhci_hcd", "0000:00:1d.2": "", "0000:00:1e.5": undefined };
  const none = { refusals: [], awaitingBoot: [] };

  it("accepts devices on vfio-pci", () => {
    expect(hostdevProblems(["0000:00:1d.0"], drivers)).toEqual(none);
    expect(hostdevProblems(["0000:00:1d.0"], drivers, ["0000:00:1d.0", "0000:00:1d.1"])).toEqual(none);
  });

  it("without the stack's binding, refuses a device on another driver or none, pointing to the VfioBinding it needs, and one that does not exist", () => {
    expect(hostdevProblems(["0000:00:1d.1", "0000:00:1d.2", "0000:00:1e.5", "0000:00:1f.7"], drivers)).toEqual({
      refusals: [
        "hostdevs[0]: 0000:00:1d.1 is driven by uhci_hcd on the host, not vfio-pci, so the guest cannot own it. Declare a VfioBinding (or VfioHost) " +
          'whose selection includes it, e.g. vfio: { devices: ["0000:00:1d.1"] }, and give this domain its planned addresses as vfioDevices ' +
          "(a host stack does); or remove 0000:00:1d.1 from hostdevs",
        expect.stringContaining("hostdevs[1]: 0000:00:1d.2 is not bound to any driver on the host, not vfio-pci"),
        "hostdevs[2]: there is no PCI device 0000:00:1e.5 on the host (lspci -D lists the addresses); correct the address",
        "hostdevs[3]: there is no PCI device 0000:00:1f.7 on the host (lspci -D lists the addresses); correct the address",
      ],
      awaitingBoot: [],
    });
  });

  it("with the stack's binding, lets its devices wait for the boot and refuses any other, even one already on vfio-pci", () => {
    expect(hostdevProblems(["0000:00:1d.1", "0000:00:1d.2"], drivers, ["0000:00:1d.1", "0000:00:1d.2"])).toEqual({
      refusals: [],
      awaitingBoot: ["0000:00:1d.1", "0000:00:1d.2"],
    });
    expect(hostdevProblems(["0000:00:1d.0", "0000:00:1d.1"], drivers, ["0000:00:1d.1"])).toEqual({
      refusals: [
        "hostdevs[0]: 0000:00:1d.0 is not one of the devices the stack's VfioBinding puts on vfio-pci (0000:00:1d.1), so nothing keeps the host's " +
          "drivers off it at boot. Add it to the binding's selection (vfio-host:vfio in a host stack), or remove it from hostdevs",
      ],
      awaitingBoot: ["0000:00:1d.1"],
    });
    expect(hostdevProblems(["0000:00:1e.5"], drivers, ["0000:00:1e.5"]).refusals).toEqual([expect.stringContaining("there is no PCI device 0000:00:1e.5")]);
  });
});

describe("describeFieldChange", () => {
  it("says when the running guest only gets a change at a restart", () => {
    const change = { field: "memoryMiB", from: 128, to: 160, applyInPlace: true };
    expect(describeFieldChange({ ...change, needsRestart: false })).toBe("memoryMiB: 128 -> 160");
    expect(describeFieldChange({ ...change, needsRestart: true })).toBe("memoryMiB: 128 -> 160 (the running guest gets this at its next start: it is restarted)");
    expect(describeFieldChange({ field: "hostdevs", from: [], to: ["0000:00:1d.0"], applyInPlace: true, needsRestart: false })).toBe('hostdevs: [] -> ["0000:00:1d.0"]');
  });
});

describe("checkLibvirtHost", () => {
  const volume = { pool: "e2e", name: "disk.qcow2", source: { hostPath: "/root/disk.qcow2" }, format: "qcow2" as const };

  it("accepts volumes in declared pools and disks on declared volumes", () => {
    expect(
      checkLibvirtHost({
        pools: [{ name: "e2e", path: "/srv/e2e" }],
        volumes: [volume],
        domains: { guest: { name: "guest", vcpus: 1, memoryMiB: 128, disks: [{ pool: "e2e", volume: "disk.qcow2" }] } },
      }),
    ).toEqual([]);
  });

  it("refuses a volume in an undeclared pool and a disk on an undeclared volume", () => {
    expect(
      checkLibvirtHost({
        pools: [{ name: "e2e", path: "/srv/e2e" }],
        volumes: [{ ...volume, pool: "nope" }],
        domains: { guest: { name: "guest", vcpus: 1, memoryMiB: 128, disks: [{ pool: "e2e", volume: "disk.qcow2" }] } },
      }),
    ).toEqual([
      'volume disk.qcow2: pool "nope" is not declared (declared pools: e2e); set pool to one of them or declare a StoragePool named "nope"',
      "domains.guest.disks[0] is volume e2e/disk.qcow2, which is not declared (declared volumes: nope/disk.qcow2); declare it in volumes, or correct its pool and volume",
    ]);
  });

  it("keeps only declared volumes on destroy", () => {
    const pools = [{ name: "e2e", path: "/srv/e2e" }];
    expect(checkLibvirtHost({ pools, volumes: [volume], retainOnDelete: ["e2e/disk.qcow2"] })).toEqual([]);
    expect(checkLibvirtHost({ pools, volumes: [volume], retainOnDelete: ["e2e/disk.qcow2", "e2e/other.qcow2"] })).toEqual([
      'retainOnDelete[1] is e2e/other.qcow2, which is not a declared volume (declared volumes: e2e/disk.qcow2); name one as "pool/name"',
    ]);
  });
});
