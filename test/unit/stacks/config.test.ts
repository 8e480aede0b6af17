import * as pulumi from "@pulumi/pulumi";
import fc from "fast-check";
import { connectionWarnings, parseConnectionConfig, parseStackConfig } from "../../../stacks/config";
import { vfioSelectionDefaults } from "../vfioBinding/fixtures";
import { generateKeyPair } from "../../sshKeys";

// Real keys: the config reads the private key the way ssh2 will (a passphrase that does not decrypt it is a config error).
const plainKey = generateKeyPair("ed25519").private;
const PASSPHRASE = "correct horse battery staple";
const encryptedKey = generateKeyPair("ed25519", { passphrase: PASSPHRASE, cipher: "aes256-ctr", rounds: 16 }).private;

const hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
const base: Record<string, string> = {
  "vfio-host:host": "192.0.2.10",
  "vfio-host:hostKey": hostKey,
  "vfio-host:sshPrivateKey": plainKey,
  "vfio-host:kernelArgs": '["intel_iommu=on","iommu=pt"]',
  "vfio-host:vfio": '{"iommuGroups":[4]}',
};
const secrets = new Set(["vfio-host:sshPrivateKey", "vfio-host:sshPrivateKeyPassphrase", "vfio-host:sshPassword"]);

/** The message parseStackConfig throws for `config`, or "" when it accepts it. */
function problems(config: Record<string, string>, secretKeys: ReadonlySet<string> = secrets): string {
  try {
    parseStackConfig(config, secretKeys);
    return "";
  } catch (error) {
    return (error as Error).message;
  }
}

describe("parseStackConfig", () => {
  it("parses JSON lists and objects and fills defaults, the connection's included", () => {
    expect(parseStackConfig(base, secrets)).toEqual({
      connection: {
        host: "192.0.2.10",
        port: 22,
        user: "root",
        hostKey,
        privateKey: plainKey,
        insecureAcceptAnyHostKey: false,
        escalation: "auto",
        readyTimeoutSeconds: 300,
      },
      kernelArgs: ["intel_iommu=on", "iommu=pt"],
      removeKernelArgs: [],
      extlinuxModules: [],
      bootBackend: "auto",
      acknowledgeBootCriticalArgs: [],
      vfio: { ...vfioSelectionDefaults, iommuGroups: [4] },
      reboot: "auto",
      rebootTimeoutSeconds: 900,
      trialBoot: true,
      trialWatchdogSeconds: 300,
      trialPanicSeconds: 10,
    });
  });

  it("hands readyTimeoutSeconds and every other connection key to the connection", () => {
    const connection = parseStackConfig(
      {
        ...base,
        "vfio-host:port": "2222",
        "vfio-host:user": "deploy",
        "vfio-host:escalation": "doas",
        "vfio-host:readyTimeoutSeconds": "30",
        "vfio-host:sshPassword": "hunter2",
      },
      secrets,
    ).connection;
    expect(connection).toMatchObject({ port: 2222, user: "deploy", escalation: "doas", readyTimeoutSeconds: 30, password: "hunter2" });
  });

  it("keeps a secret as the text it is, even when it looks like JSON", () => {
    for (const password of ['{"a":1}', "[secret]"]) {
      expect(parseStackConfig({ ...base, "vfio-host:sshPassword": password }, secrets).connection.password).toBe(password);
    }
  });

  it("reads any port and timeout written as text as that number, and refuses other text by its key", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 3600 }), (port, timeout) => {
        const { connection } = parseStackConfig({ ...base, "vfio-host:port": String(port), "vfio-host:readyTimeoutSeconds": String(timeout) }, secrets);
        expect([connection.port, connection.readyTimeoutSeconds]).toEqual([port, timeout]);
      }),
    );
    expect(problems({ ...base, "vfio-host:port": "ssh" })).toContain('vfio-host:port = "ssh": must be a port number from 1 to 65535, e.g. 22');
    expect(problems({ ...base, "vfio-host:readyTimeoutSeconds": "" })).toContain('vfio-host:readyTimeoutSeconds = "": must be a whole number of seconds from 1 to 3600');
  });

  it('reads "false" as false and "true" as true in every boolean key, and refuses anything else', () => {
    const flags = (value: string) => {
      const config = parseStackConfig(
        { ...base, "vfio-host:insecureAcceptAnyHostKey": value, "vfio-host:sshAgent": value, "vfio-host:trialBoot": value },
        secrets,
      );
      return [config.connection.insecureAcceptAnyHostKey, config.connection.agent, config.trialBoot];
    };
    expect(flags("false")).toEqual([false, false, false]);
    expect(flags("true")).toEqual([true, true, true]);
    const refused = problems({ ...base, "vfio-host:insecureAcceptAnyHostKey": "yes", "vfio-host:sshAgent": "1", "vfio-host:trialBoot": "False" });
    expect(refused).toContain('vfio-host:insecureAcceptAnyHostKey = "yes": must be true or false');
    expect(refused).toContain('vfio-host:sshAgent = "1": must be true or false');
    expect(refused).toContain('vfio-host:trialBoot = "False": must be true or false');
  });

  it("names a mistyped key and suggests the right one", () => {
    expect(problems({ ...base, "vfio-host:kernelArg": "[]" })).toContain(
      "vfio-host:kernelArg is not a config key of this project; did you mean vfio-host:kernelArgs?",
    );
    expect(problems({ ...base, "vfio-host:sshagent": "true" })).toContain("did you mean vfio-host:sshAgent?");
  });

  it("asks for a way to log in, naming the secret, the password and the agent", () => {
    const { ["vfio-host:sshPrivateKey"]: _, ...withoutKey } = base;
    expect(problems(withoutKey, new Set())).toContain(
      "vfio-host:sshPrivateKey: is not set, and there is no other way to log in: set the secret `sshPrivateKey` " +
        "(pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519), the secret `sshPassword`, or `sshAgent: true`",
    );
    expect(parseStackConfig({ ...withoutKey, "vfio-host:sshAgent": "true" }, secrets).connection).toMatchObject({ agent: true });
  });

  it("refuses a private key, its passphrase or a password stored in plain text", () => {
    const text = problems({ ...base, "vfio-host:sshPrivateKey": encryptedKey, "vfio-host:sshPrivateKeyPassphrase": PASSPHRASE, "vfio-host:sshPassword": "p" }, new Set());
    for (const key of ["sshPrivateKey", "sshPrivateKeyPassphrase", "sshPassword"]) {
      expect(text).toContain(`vfio-host:${key} is stored in plain text; set it again with \`pulumi config set --secret ${key} ...\``);
    }
  });

  it("decrypts a private key with its passphrase, and names the key at fault when it cannot, never showing a secret", () => {
    const withKey = { ...base, "vfio-host:sshPrivateKey": encryptedKey };
    expect(parseStackConfig({ ...withKey, "vfio-host:sshPrivateKeyPassphrase": PASSPHRASE }, secrets).connection).toMatchObject({
      privateKey: encryptedKey,
      passphrase: PASSPHRASE,
    });
    expect(problems(withKey)).toContain("vfio-host:sshPrivateKey: is encrypted and has no passphrase; set it as a secret (`pulumi config set --secret sshPrivateKeyPassphrase`)");
    const wrong = problems({ ...withKey, "vfio-host:sshPrivateKeyPassphrase": "not the passphrase" });
    expect(wrong).toContain("vfio-host:sshPrivateKeyPassphrase: does not decrypt the private key (OpenSSH key integrity check failed -- bad passphrase?)");
    const garbage = problems({ ...base, "vfio-host:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret bytes\n" });
    expect(garbage).toContain("vfio-host:sshPrivateKey: is not a private key ssh2 can read");
    for (const text of [wrong, garbage]) expect(text).not.toMatch(/not the passphrase|secret bytes|BEGIN/);
    expect(problems({ ...base, "vfio-host:sshPrivateKeyPassphrase": "p", "vfio-host:sshPrivateKey": "" })).toContain(
      "vfio-host:sshPrivateKeyPassphrase: is set but there is no private key for it to decrypt",
    );
  });

  it("reports a newline or a quote in a kernel argument as a malformed argument of vfio-host:kernelArgs", () => {
    const text = problems({ ...base, "vfio-host:kernelArgs": JSON.stringify(["intel_iommu=on", "iommu=pt\nquiet", 'vfio_pci.ids="8086:3a67"']) });
    expect(text).toContain('vfio-host:kernelArgs[1]: "iommu=pt\\nquiet" contains "\\n", which grub-mkconfig copies unquoted into grub.cfg');
    expect(text).toContain('vfio-host:kernelArgs[2]: "vfio_pci.ids=\\"8086:3a67\\"" contains "\\"", which grub-mkconfig copies unquoted');
    expect(text).not.toContain("IOMMU is off");
  });

  it("runs KernelCmdline's own cross-checks under the stack's key names", () => {
    expect(problems({ ...base, "vfio-host:kernelArgs": '["intel_iommu=on","root=/dev/sdb1"]' })).toContain(
      'vfio-host:kernelArgs: "root=/dev/sdb1" sets root=, which decides how the host finds and starts its root filesystem',
    );
    expect(problems({ ...base, "vfio-host:kernelArgs": "[]" })).toContain("vfio-host:kernelArgs: is empty; list the arguments this resource owns");
    expect(problems({ ...base, "vfio-host:bootBackend": "lilo" })).toContain('vfio-host:bootBackend: "lilo" must be "auto", "grub", "extlinux", "systemd-boot", "proxmox-boot-tool", "grubby" or "syslinux"');
    expect(parseStackConfig({ ...base, "vfio-host:acknowledgeBootCriticalArgs": '["root"]', "vfio-host:kernelArgs": '["root=/dev/sdb1"]' }, secrets)).toMatchObject({
      kernelArgs: ["root=/dev/sdb1"],
      acknowledgeBootCriticalArgs: ["root"],
    });
  });

  it("checks vfio with VfioBinding's schema, naming the full key", () => {
    const text = problems({ ...base, "vfio-host:vfio": '{"devices":["zz"],"bindby":"ids"}' });
    expect(text).toContain("vfio-host:vfio: Unknown VfioBinding input `bindby`");
    expect(problems({ ...base, "vfio-host:vfio": '{"devices":["zz"]}' })).toContain(
      'vfio-host:vfio.devices[0]: "zz" is neither a vendor:device id nor a PCI address; write an id like "8086:3a67"',
    );
    expect(problems({ ...base, "vfio-host:vfio": "{}" })).toContain("vfio-host:vfio.devices: Nothing is selected");
  });

  it("checks libvirt with the resources' schemas and LibvirtHost's assertions, naming the full key", () => {
    const libvirt = {
      pools: [{ name: "default", path: "/var/lib/libvirt/images" }],
      volumes: [{ pool: "images", name: "haos.qcow2", source: { url: "https://example.org/haos.qcow2.xz" }, format: "qcow2" }],
      domains: { homeassistant: { name: "homeassistant", vcpus: 2, memoryMiB: "lots", hostdevs: ["0000:00:1a.0"] } },
    };
    const text = problems({ ...base, "vfio-host:libvirt": JSON.stringify(libvirt) });
    expect(text).toContain('vfio-host:libvirt.domains.homeassistant.memoryMiB: "lots" is not a whole number of MiB, at least 1; write for example 4096');
    const fixed = { ...libvirt, domains: { homeassistant: { ...libvirt.domains.homeassistant, memoryMiB: 4096 } } };
    expect(problems({ ...base, "vfio-host:libvirt": JSON.stringify(fixed) })).toContain(
      'vfio-host:libvirt: volume haos.qcow2: pool "images" is not declared (declared pools: default)',
    );
    const declared = { ...fixed, volumes: [{ ...fixed.volumes[0], pool: "default" }] };
    expect(parseStackConfig({ ...base, "vfio-host:libvirt": JSON.stringify(declared) }, secrets).libvirt?.domains?.homeassistant).toMatchObject({
      memoryMiB: 4096,
      boot: "uefi",
      hostdevs: ["0000:00:1a.0"],
    });
    expect(problems({ ...base, "vfio-host:libvirt": '{"guests":{}}' })).toContain("vfio-host:libvirt: unknown key guests; the keys are packages, pools, volumes, domains");
  });

  it("reports every problem at once, one line each, as a RunError (the CLI prints it without a stack)", () => {
    let thrown: unknown;
    try {
      parseStackConfig({ ...base, "vfio-host:port": "0", "vfio-host:kernelArgs": '["a b"]', "vfio-host:vfio": '{"devices":["zz"]}', "vfio-host:reboot": "later" }, secrets);
    } catch (error) {
      thrown = error;
    }
    expect(pulumi.RunError.isInstance(thrown)).toBe(true);
    const lines = (thrown as Error).message.split("\n");
    expect(lines[0]).toBe("The stack config has 4 problems:");
    expect(lines.slice(1).map((line) => /^ {2}vfio-host:([^\s:=]+)/.exec(line)?.[1])).toEqual(["port", "kernelArgs[0]", "vfio.devices[0]", "reboot"]);
  });

  it("ignores other projects' keys", () => {
    expect(parseStackConfig({ ...base, "aws:region": "eu-west-1" }, secrets).connection.host).toBe("192.0.2.10");
  });
});

describe("parseConnectionConfig", () => {
  it("reads only the connection keys of the namespace asked for, checked as the stack's are", () => {
    const fixture = { "e2e:host": "10.0.0.2", "e2e:port": "2222", "e2e:readyTimeoutSeconds": "45", "e2e:sshPrivateKey": plainKey, "e2e:insecureAcceptAnyHostKey": "true", "e2e:poolPath": "/x" };
    expect(parseConnectionConfig(fixture, new Set(["e2e:sshPrivateKey"]), "e2e")).toMatchObject({
      host: "10.0.0.2",
      port: 2222,
      readyTimeoutSeconds: 45,
      insecureAcceptAnyHostKey: true,
    });
    expect(() => parseConnectionConfig(fixture, new Set(), "e2e")).toThrow("e2e:sshPrivateKey is stored in plain text");
    expect(() => parseConnectionConfig({ ...fixture, "e2e:insecureAcceptAnyHostKey": "false" }, new Set(["e2e:sshPrivateKey"]), "e2e")).toThrow(
      "e2e:hostKey: is not set; pin the host's key: `npm run trust -- --stack STACK` shows the keys the host offers",
    );
  });
});

describe("insecureAcceptAnyHostKey and its former name", () => {
  const { "vfio-host:hostKey": _pinned, ...unpinned } = base;

  it("reads insecureTrustOnFirstUse as insecureAcceptAnyHostKey, and refuses the two names together", () => {
    expect(parseStackConfig({ ...unpinned, "vfio-host:insecureTrustOnFirstUse": "true" }, secrets).connection.insecureAcceptAnyHostKey).toBe(true);
    expect(parseStackConfig({ ...base, "vfio-host:insecureTrustOnFirstUse": "false" }, secrets).connection.insecureAcceptAnyHostKey).toBe(false);
    expect(problems({ ...unpinned, "vfio-host:insecureTrustOnFirstUse": "true", "vfio-host:insecureAcceptAnyHostKey": "true" })).toContain(
      "vfio-host:insecureTrustOnFirstUse = \"true\": is the former name of insecureAcceptAnyHostKey, which is set too; remove it",
    );
  });

  it("warns on every run while any key is accepted, and names the new key and `npm run trust` for the old one", () => {
    expect(connectionWarnings(base, "myhost")).toEqual([]);
    expect(connectionWarnings({ ...unpinned, "vfio-host:insecureAcceptAnyHostKey": "true" }, "myhost")).toEqual([
      "vfio-host:insecureAcceptAnyHostKey is true: every connection to 192.0.2.10 accepts whatever host key it is shown, so anything between " +
        "this machine and the host can take the connection and what is sent over it; pin the host's key instead with `npm run trust -- --stack myhost` " +
        "(it shows the host's keys and fingerprints, and writes vfio-host:hostKey)",
    ]);
    const renamed = connectionWarnings({ ...unpinned, "vfio-host:insecureTrustOnFirstUse": "true" }, "myhost");
    expect(renamed).toHaveLength(2);
    expect(renamed[0]).toMatch(/^vfio-host:insecureTrustOnFirstUse is now called vfio-host:insecureAcceptAnyHostKey .*`npm run trust -- --stack myhost`/);
    expect(renamed[1]).toMatch(/^vfio-host:insecureAcceptAnyHostKey is true: /);
    expect(connectionWarnings({ ...unpinned, "vfio-host:insecureAcceptAnyHostKey": "false" }, "myhost")).toEqual([]);
    expect(connectionWarnings({ ...base, "vfio-host:insecureAcceptAnyHostKey": "true" }, "myhost")).toEqual([
      "vfio-host:insecureAcceptAnyHostKey has no effect while vfio-host:hostKey is pinned; remove it (`npm run pulumi -- config rm insecureAcceptAnyHostKey`)",
    ]);
  });
});
