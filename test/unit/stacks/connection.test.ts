// The connection Output the programs hand to resources: built from the checked config, one secret.
import * as pulumi from "@pulumi/pulumi";
import { connectionFromConfig, secretConnection } from "../../../stacks/connection";
import { parseStackConfig, readStackConfig } from "../../../stacks/config";
import { generateKeyPair } from "../../sshKeys";

const privateKey = generateKeyPair("ed25519").private;
const hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

const valueOf = <T>(output: pulumi.Output<T>) => new Promise<T>((resolve) => output.apply(resolve));

afterEach(() => pulumi.runtime.setAllConfig({}));

test("a host stack's connection is one secret Output of the parsed keys, readyTimeoutSeconds included", async () => {
  const config = parseStackConfig(
    {
      "vfio-host:host": "192.0.2.10",
      "vfio-host:hostKey": hostKey,
      "vfio-host:sshPrivateKey": privateKey,
      "vfio-host:readyTimeoutSeconds": "42",
      "vfio-host:kernelArgs": '["intel_iommu=on"]',
      "vfio-host:vfio": '{"iommuGroups":[4]}',
    },
    new Set(["vfio-host:sshPrivateKey"]),
  );
  const connection = secretConnection(config.connection);
  expect(await pulumi.isSecret(connection)).toBe(true);
  expect(await valueOf(connection)).toMatchObject({ host: "192.0.2.10", readyTimeoutSeconds: 42, privateKey });
});

test("a fixture program's connection comes from its own namespace, with the same schema", async () => {
  pulumi.runtime.setAllConfig(
    {
      "fixture:host": "10.0.0.2",
      "fixture:port": "2222",
      "fixture:readyTimeoutSeconds": "45",
      "fixture:insecureAcceptAnyHostKey": "false",
      "fixture:hostKey": hostKey,
      "fixture:sshPrivateKey": privateKey,
      "fixture:motd": "not a connection key",
    },
    ["fixture:sshPrivateKey"],
  );
  const connection = connectionFromConfig(new pulumi.Config("fixture"));
  expect(await pulumi.isSecret(connection)).toBe(true);
  expect(await valueOf(connection)).toMatchObject({ host: "10.0.0.2", port: 2222, readyTimeoutSeconds: 45, insecureAcceptAnyHostKey: false });

  pulumi.runtime.setAllConfig({ "fixture:host": "10.0.0.2", "fixture:sshPrivateKey": privateKey, "fixture:insecureAcceptAnyHostKey": "true" }, []);
  expect(() => connectionFromConfig(new pulumi.Config("fixture"))).toThrow("fixture:sshPrivateKey is stored in plain text");
});

test("every run that reads a connection accepting any host key warns, naming `npm run trust` and the stack", () => {
  const warn = jest.spyOn(pulumi.log, "warn").mockResolvedValue();
  try {
    pulumi.runtime.setAllConfig({ "vfio-host:host": "10.0.0.2", "vfio-host:sshPrivateKey": privateKey, "vfio-host:hostKey": hostKey, "vfio-host:kernelArgs": '["intel_iommu=on"]', "vfio-host:vfio": '{"iommuGroups":[4]}' }, ["vfio-host:sshPrivateKey"]);
    readStackConfig();
    expect(warn).not.toHaveBeenCalled();
    pulumi.runtime.setAllConfig({ "vfio-host:host": "10.0.0.2", "vfio-host:sshPrivateKey": privateKey, "vfio-host:insecureTrustOnFirstUse": "true", "vfio-host:kernelArgs": '["intel_iommu=on"]', "vfio-host:vfio": '{"iommuGroups":[4]}' }, ["vfio-host:sshPrivateKey"]);
    readStackConfig();
    pulumi.runtime.setAllConfig({ "fixture:host": "10.0.0.2", "fixture:sshPrivateKey": privateKey, "fixture:insecureAcceptAnyHostKey": "true" }, ["fixture:sshPrivateKey"]);
    connectionFromConfig(new pulumi.Config("fixture"));
    const warnings = warn.mock.calls.map(([message]) => message);
    expect(warnings).toEqual([
      expect.stringMatching(/^vfio-host:insecureTrustOnFirstUse is now called vfio-host:insecureAcceptAnyHostKey .*`npm run trust -- --stack /),
      expect.stringMatching(/^vfio-host:insecureAcceptAnyHostKey is true: every connection to 10\.0\.0\.2 accepts whatever host key/),
      expect.stringMatching(/^fixture:insecureAcceptAnyHostKey is true: every connection to 10\.0\.0\.2 accepts whatever host key .*writes fixture:hostKey/),
    ]);
  } finally {
    warn.mockRestore();
  }
});
