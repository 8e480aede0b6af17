import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Client } from "ssh2";
import { startTestHost, TestHost } from "../testhost/testHost";

/** One connection per command, so the test also checks the login count sshd logs. */
function ssh(host: TestHost, username: string, command: string): Promise<{ stdout: Buffer; stderr: string; code: number }> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    client
      .on("ready", () =>
        client.exec(command, (error, channel) => {
          if (error) return reject(error);
          const stdout: Buffer[] = [];
          let stderr = "";
          channel.on("data", (chunk: Buffer) => stdout.push(chunk));
          channel.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
          let code = -1;
          channel.on("exit", (status: number) => (code = status));
          channel.on("close", () => {
            client.end();
            resolve({ stdout: Buffer.concat(stdout), stderr, code });
          });
        }),
      )
      .on("error", reject)
      .connect({
        host: host.host,
        port: host.port,
        username,
        privateKey: host.privateKey,
        hostVerifier: (key: Buffer) => key.equals(Buffer.from(host.hostKey.split(" ")[1], "base64")),
      });
  });
}

const namespaces = () => execFileSync("ip", ["netns", "list"], { encoding: "utf8" });

describe("test host: sshd chrooted into its own tree and network namespace", () => {
  let host: TestHost;

  // A cold cache builds the rootfs with mmdebstrap first.
  beforeAll(async () => {
    host = await startTestHost();
  }, 15 * 60_000);
  afterAll(() => host?.stop());

  it("serves the tree's /etc/os-release, not this machine's", async () => {
    const result = await ssh(host, "root", "cat /etc/os-release");
    expect(result.code).toBe(0);
    expect(result.stdout.equals(fs.readFileSync(path.join(host.rootfs, "etc/os-release")))).toBe(true);
    expect(result.stdout.equals(fs.readFileSync(path.join(host.pristineRootfs, "etc/os-release")))).toBe(true);
  });

  it("logs in as root, and as deploy who escalates with sudo -n", async () => {
    expect((await ssh(host, "root", "id -u")).stdout.toString()).toBe("0\n");
    expect((await ssh(host, "deploy", "id -u")).stdout.toString()).toBe("1000\n");
    const sudo = await ssh(host, "deploy", "sudo -n id -u");
    expect({ stdout: sudo.stdout.toString(), stderr: sudo.stderr }).toEqual({ stdout: "0\n", stderr: "" });
  });

  it("writes into the tree and never into this machine's /etc", async () => {
    const name = `vfiotest-marker-${randomBytes(4).toString("hex")}`;
    const result = await ssh(host, "root", `echo written-over-ssh > /etc/${name}`);
    expect(result).toMatchObject({ code: 0, stderr: "" });
    expect(fs.readFileSync(path.join(host.rootfs, "etc", name), "utf8")).toBe("written-over-ssh\n");
    expect(fs.existsSync(path.join(host.upperDir, "etc", name))).toBe(true);
    expect(fs.existsSync(path.join(host.pristineRootfs, "etc", name))).toBe(false);
    expect(fs.existsSync(path.join("/etc", name))).toBe(false);
  });

  it("keeps this machine's hostname, sysctls, modules, clock and disks out of reach", async () => {
    const result = await ssh(host, "root", "hostname; grep CapBnd /proc/self/status; cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness");
    const [hostname, capBnd] = result.stdout.toString().split("\n");
    expect(hostname).toBe("testhost");
    // capabilities(7): CAP_SYS_MODULE 16, CAP_SYS_RAWIO 17, CAP_SYS_ADMIN 21, CAP_SYS_BOOT 22, CAP_SYS_TIME 25, CAP_MKNOD 27.
    const bounding = BigInt(`0x${capBnd.split(/\s+/)[1]}`);
    expect([16, 17, 21, 22, 25, 27].filter((bit) => (bounding >> BigInt(bit)) & 1n)).toEqual([]);
    expect(result.stderr).toContain("Read-only file system");
  });

  it("shows no swap area of this machine's (a guard would refuse one it cannot trace)", async () => {
    const result = await ssh(host, "root", "cat /proc/swaps");
    expect(result.stdout.toString().trim().split("\n")).toEqual([expect.stringMatching(/^Filename\s+Type\s+Size\s+Used\s+Priority$/)]);
  });

  it("counts each SSH connection in sshd's log", async () => {
    const before = host.acceptedLogins();
    await ssh(host, "root", "true");
    await ssh(host, "deploy", "true");
    expect(host.acceptedLogins()).toBe(before + 2);
  });

  it("stop removes its processes, namespace, veth and work dir", async () => {
    const processes = execFileSync("ip", ["netns", "pids", host.namespace], { encoding: "utf8" }).split("\n").filter(Boolean).map(Number);
    expect(processes).toContain(host.pid);
    expect(namespaces()).toContain(host.namespace);

    await host.stop();

    expect(processes.filter((pid) => fs.existsSync(`/proc/${pid}`))).toEqual([]);
    expect(namespaces()).not.toContain(host.namespace);
    expect(execFileSync("ip", ["-o", "link", "show"], { encoding: "utf8" })).not.toContain(`vt-${host.namespace.slice("vfiotest-".length)}`);
    expect(fs.existsSync(host.rootfs)).toBe(false);
  });
});
