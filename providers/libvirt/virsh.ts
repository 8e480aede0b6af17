// virsh as the libvirt resources call it, in steps (argv) and in fact snippets (shell words).

// The system instance, whoever the SSH user is: without --connect, a non-root member of the
// libvirt group would talk to qemu:///session and see none of the host's pools or guests.
// LC_ALL=C because virsh translates its output (domstate, pool-info), which steps and facts parse.
const VIRSH = ["env", "LC_ALL=C", "virsh", "--connect", "qemu:///system"] as const;

/** argv for `virsh <command> <args...>` against qemu:///system with untranslated output. */
export function virsh(command: string, ...args: string[]): string[] {
  return [...VIRSH, command, ...args];
}

/** `virsh COMMAND` as shell words, for the fact snippets (names reach them only as "$1"...). */
export const virshSh = (command: string): string => virsh(command).join(" ");
