import { parseStackConfig } from "../../../stacks/config";

const base = {
  "vfio-host:host": "192.0.2.10",
  "vfio-host:hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
  "vfio-host:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----",
  "vfio-host:kernelArgs": '["intel_iommu=on","iommu=pt"]',
  "vfio-host:vfio": '{"iommuGroups":[4]}',
};
const secrets = new Set(["vfio-host:sshPrivateKey"]);

describe("parseStackConfig", () => {
  it("parses JSON lists and objects and fills defaults", () => {
    expect(parseStackConfig(base, secrets)).toMatchObject({
      host: "192.0.2.10",
      port: 22,
      user: "root",
      kernelArgs: ["intel_iommu=on", "iommu=pt"],
      vfio: { iommuGroups: [4] },
      reboot: "auto",
    });
  });

  it("names a mistyped key and suggests the right one", () => {
    expect(() => parseStackConfig({ ...base, "vfio-host:kernelArg": "[]" }, secrets)).toThrow(
      "vfio-host:kernelArg is not a config key of this project; did you mean vfio-host:kernelArgs?",
    );
  });

  it("asks for the missing secret with the command that sets it", () => {
    const { ["vfio-host:sshPrivateKey"]: _, ...withoutKey } = base;
    expect(() => parseStackConfig(withoutKey, new Set())).toThrow(
      "vfio-host:sshPrivateKey: is not set; run `pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`",
    );
  });

  it("refuses a private key stored in plain text", () => {
    expect(() => parseStackConfig(base, new Set())).toThrow(
      "vfio-host:sshPrivateKey is stored in plain text; set it again with `pulumi config set --secret sshPrivateKey ...`",
    );
  });

  it("shows the bad value and an example", () => {
    expect(() => parseStackConfig({ ...base, "vfio-host:port": "ssh" }, secrets)).toThrow(
      /vfio-host:port = "ssh": .*; e\.g\. vfio-host:port: 22/,
    );
  });

  it("passes the boot-critical acknowledgement through, empty unless set", () => {
    expect(parseStackConfig(base, secrets).acknowledgeBootCriticalArgs).toEqual([]);
    expect(parseStackConfig({ ...base, "vfio-host:acknowledgeBootCriticalArgs": '["root"]' }, secrets).acknowledgeBootCriticalArgs).toEqual(["root"]);
    expect(() => parseStackConfig({ ...base, "vfio-host:acknowledgeBootCriticalArg": '["root"]' }, secrets)).toThrow(
      "vfio-host:acknowledgeBootCriticalArg is not a config key of this project; did you mean vfio-host:acknowledgeBootCriticalArgs?",
    );
  });

  it("ignores other projects' keys", () => {
    expect(parseStackConfig({ ...base, "aws:region": "eu-west-1" }, secrets).host).toBe("192.0.2.10");
  });
});
