import { buildHostDiscovery } from "../../../providers/discovery/inventory";
import { parseVfioHostSections } from "../../../providers/vfioBinding/readFacts";
import { ConnectionSchema } from "../../../providers/ssh/connection";
import { connectionFromStackConfig, parseDiscoverArgs, renderReport } from "../../../scripts/discover";
import { labSections, referenceSections } from "./fixtures";
import { generateKeyPair } from "../../sshKeys";

const hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

describe("parseDiscoverArgs", () => {
  it("takes a stack, the lab, or a host with its key", () => {
    expect(parseDiscoverArgs(["--stack", "reference"])).toEqual({ target: { kind: "stack", stack: "reference" }, json: false });
    expect(parseDiscoverArgs(["--lab", "--group", "4", "--json"])).toEqual({ target: { kind: "lab" }, group: 4, json: true });
    expect(parseDiscoverArgs(["--host", "192.0.2.10", "--port", "2222", "--user", "deploy", "--key", "/k", "--host-key", hostKey])).toEqual({
      target: { kind: "flags", keyFile: "/k", connection: { host: "192.0.2.10", port: 2222, user: "deploy", hostKey } },
      json: false,
    });
    expect(parseDiscoverArgs(["--host", "192.0.2.10", "--agent", "--host-key", hostKey])).toEqual({
      target: { kind: "flags", connection: { host: "192.0.2.10", port: 22, user: "root", agent: true, hostKey } },
      json: false,
    });
    expect(parseDiscoverArgs(["--host", "192.0.2.10", "--key", "/k", "--insecure-accept-any-host-key"])).toEqual({
      target: { kind: "flags", keyFile: "/k", connection: { host: "192.0.2.10", port: 22, user: "root", insecureAcceptAnyHostKey: true } },
      json: false,
    });
    expect(parseDiscoverArgs(["-h"])).toBe("help");
  });

  it("says what is wrong with the command line", () => {
    expect(() => parseDiscoverArgs([])).toThrow("Say where to connect: exactly one of --stack NAME, --lab or --host HOST");
    expect(() => parseDiscoverArgs(["--lab", "--stack", "x"])).toThrow("exactly one of");
    expect(() => parseDiscoverArgs(["--lab", "--port", "22"])).toThrow("--port goes with --host; --stack and --lab bring their own connection");
    expect(() => parseDiscoverArgs(["--host", "h"])).toThrow("--host needs --key FILE, the SSH private key to log in with, or --agent");
    expect(() => parseDiscoverArgs(["--lab", "--agent"])).toThrow("--agent goes with --host");
    expect(() => parseDiscoverArgs(["--lab", "--insecure-accept-any-host-key"])).toThrow("--insecure-accept-any-host-key goes with --host");
    expect(() => parseDiscoverArgs(["--host", "h", "--key", "/k", "--insecure-trust-on-first-use"])).toThrow(
      "--insecure-trust-on-first-use is now --insecure-accept-any-host-key (it accepted any key on every connection); better, pin the key: `npm run trust -- --host HOST`",
    );
    expect(() => parseDiscoverArgs(["--lab", "--group", "four"])).toThrow('--group "four" is not a whole number');
    expect(() => parseDiscoverArgs(["--lab", "--grup", "4"])).toThrow("Unknown option '--grup'");
    expect(() => parseDiscoverArgs(["--host", "h", "--key", "/k", "--port", "70000"])).toThrow('--port "70000" is not a port number from 1 to 65535');
  });
});

describe("connectionFromStackConfig", () => {
  // `pulumi config --show-secrets --json -s reference`: every value a string.
  const privateKey = generateKeyPair("ed25519").private;
  const stackConfig = {
    "vfio-host:host": { value: "192.0.2.10", secret: false },
    "vfio-host:port": { value: "2222", secret: false },
    "vfio-host:user": { value: "deploy", secret: false },
    "vfio-host:hostKey": { value: hostKey, secret: false },
    "vfio-host:readyTimeoutSeconds": { value: "45", secret: false },
    "vfio-host:sshPrivateKey": { value: privateKey, secret: true },
    "vfio-host:vfio": { value: '{"devices":["8086:3a67"]}', objectValue: { devices: ["8086:3a67"] }, secret: false },
  };

  it("reads the stack's connection keys with the program's schema, readyTimeoutSeconds included", () => {
    const connection = connectionFromStackConfig(stackConfig, "reference");
    expect(connection).toEqual({
      host: "192.0.2.10",
      port: 2222,
      user: "deploy",
      hostKey,
      privateKey,
      insecureAcceptAnyHostKey: false,
      escalation: "auto",
      readyTimeoutSeconds: 45,
    });
    expect(ConnectionSchema.safeParse(connection).success).toBe(true);
  });

  it('reads booleans as the program does: "false" is false, "yes" is refused', () => {
    const { "vfio-host:hostKey": _k, ...unpinned } = stackConfig;
    expect(connectionFromStackConfig({ ...stackConfig, "vfio-host:insecureAcceptAnyHostKey": { value: "false" } }, "reference").insecureAcceptAnyHostKey).toBe(false);
    expect(connectionFromStackConfig({ ...unpinned, "vfio-host:insecureAcceptAnyHostKey": { value: "true" } }, "reference").insecureAcceptAnyHostKey).toBe(true);
    expect(() => connectionFromStackConfig({ ...unpinned, "vfio-host:insecureAcceptAnyHostKey": { value: "yes" } }, "reference")).toThrow(
      'vfio-host:insecureAcceptAnyHostKey = "yes": must be true or false',
    );
  });

  it("defaults the port and user, and names each problem with the command that sets a key", () => {
    const { "vfio-host:port": _p, "vfio-host:user": _u, ...rest } = stackConfig;
    expect(connectionFromStackConfig(rest, "reference")).toMatchObject({ port: 22, user: "root" });
    expect(() => connectionFromStackConfig({}, "reference")).toThrow(
      /^stack reference: The stack config has 3 problems:\n {2}vfio-host:host: is not set; give the host's name or address, e\.g\. 192\.0\.2\.10\n.*sshPrivateKey.*\n.*hostKey.*\n\(set a key with `npm run pulumi -- config set KEY VALUE -s reference`\)$/,
    );
    expect(() => connectionFromStackConfig({ ...stackConfig, "vfio-host:port": { value: "ssh" } }, "reference")).toThrow(
      'vfio-host:port = "ssh": must be a port number from 1 to 65535, e.g. 22',
    );
    expect(() => connectionFromStackConfig({ ...stackConfig, "vfio-host:sshPrivateKey": { value: privateKey, secret: false } }, "reference")).toThrow(
      "vfio-host:sshPrivateKey is stored in plain text",
    );
  });
});

describe("renderReport", () => {
  it("prints the groups, the USB buses and the config of the suggested group", () => {
    const report = renderReport(buildHostDiscovery("root@192.0.2.10:22", parseVfioHostSections(referenceSections, "root@192.0.2.10:22")));
    expect(report.split("\n").filter((line) => /^\S/.test(line))).toEqual([
      "IOMMU groups of root@192.0.2.10:22:",
      'Preflight of the CPU and firmware, for kernelArgs ["intel_iommu=on", "iommu=pt"]:',
      ...[0, 1, 2, 3, 4, 5, 6, 7].map((g) => `IOMMU group ${g}:`),
      "USB buses:",
      "Bus  Controller    Id         Driver    IOMMU group  USB devices",
      "Stack config for IOMMU group 4 (merge into stacks/Pulumi.<stack>.yaml; another group: --group N):",
      "config:",
    ]);
  });

  it("prints the notes, and no config while the IOMMU is off", () => {
    const sections = { ...labSections, iommuGroups: "", cmdline: "ro quiet\n" };
    const report = renderReport(buildHostDiscovery("root@lab:22", parseVfioHostSections(sections, "root@lab:22")), 4);
    expect(report).toContain("Notes:\n- root@lab:22: runs kernel 6.1.0-17-amd64 but boots 6.1.0-18-amd64 next; its modules are the ones that count\n");
    expect(report).toContain("The IOMMU is off on root@lab:22");
    expect(report).not.toContain("vfio-host:vfio:");
  });
});
