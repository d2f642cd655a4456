import { readFileSync } from "node:fs";

/** Looks up user and group names, as `uid` and `gid` in [bypass.NAME] need. */
export interface AccountDatabase {
  userId(name: string): number | undefined;
  groupId(name: string): number | undefined;
}

/**
 * Reads /etc/passwd and /etc/group when a name is first looked up. Names that
 * only NSS modules such as LDAP or systemd-userdb provide are not found, and
 * a configuration gives those as numbers.
 */
export function localAccounts(passwd = "/etc/passwd", group = "/etc/group"): AccountDatabase {
  let users: Map<string, number> | undefined;
  let groups: Map<string, number> | undefined;
  return {
    userId(name) {
      users ??= readIds(passwd);
      return users.get(name);
    },
    groupId(name) {
      groups ??= readIds(group);
      return groups.get(name);
    },
  };
}

// Both files have the name in the first field and the id in the third.
function readIds(path: string): Map<string, number> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return new Map();
    }
    throw error;
  }
  const ids = new Map<string, number>();
  for (const line of text.split("\n")) {
    const fields = line.split(":");
    const id = fields[2] ?? "";
    if (fields.length >= 3 && /^[0-9]{1,10}$/.test(id) && !ids.has(fields[0]!)) {
      ids.set(fields[0]!, Number(id));
    }
  }
  return ids;
}
