// Parsers for the text the fact readers collect. virsh runs with LC_ALL=C (see virsh.ts), so
// the labels below are the untranslated ones.

/**
 * "Key: value" lines, as printed by `virsh pool-info`, `virsh dominfo` and `virsh vol-info`.
 * Keys keep their spelling ("Autostart", "State"); values are trimmed.
 */
export function parseVirshFields(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return fields;
}

/**
 * Short id to libosinfo id, from the table `osinfo-query os --fields=short-id,id` prints:
 *  Short ID    | ID
 * -------------+-------------------------------
 *  debian12    | http://debian.org/debian/12
 */
export function parseOsinfoQuery(text: string): Record<string, string> {
  const ids: Record<string, string> = {};
  for (const line of text.split("\n").slice(1)) {
    const cells = line.split("|").map((cell) => cell.trim());
    if (cells.length === 2 && cells[0] !== "") ids[cells[0]] = cells[1];
  }
  return ids;
}
