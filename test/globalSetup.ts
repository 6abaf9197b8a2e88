// Runs once before the integration project (vitest.config.ts): the real servers its tests need
// must be there. A missing server fails the run with a message saying how to start it — never a
// skip. Every missing server is named at once, so one failed run says all there is to do.
import { execFileSync } from "node:child_process"
import * as Mysql from "mysql2/promise"
import { buildIfStale } from "./support/build.js"

const mysqlHost = process.env["GARIVINI_TEST_MYSQL_HOST"] ?? "127.0.0.1"
const mysqlPort = Number(process.env["GARIVINI_TEST_MYSQL_PORT"] ?? "3306")

/** What is wrong with MariaDB and how to fix it, or undefined when it answers. */
const mariaDbProblem = async (): Promise<string | undefined> => {
  try {
    const conn = await Mysql.createConnection({
      host: mysqlHost,
      port: mysqlPort,
      user: "root",
      password: "",
      connectTimeout: 5000
    })
    await conn.query("SELECT 1")
    await conn.end()
    return undefined
  } catch (cause) {
    return `MariaDB is not reachable at ${mysqlHost}:${mysqlPort} as root with an empty password (${
      String(cause)
    }).\n` +
      `Start it with: start-stop-daemon --start --oknodo --background --exec "$(command -v mariadbd)"\n` +
      "(or point GARIVINI_TEST_MYSQL_HOST / GARIVINI_TEST_MYSQL_PORT at one)"
  }
}

const gearmandProblem = (): string | undefined => {
  try {
    execFileSync("gearmand", ["--version"], { stdio: "pipe" })
    return undefined
  } catch {
    return "gearmand is not on the PATH; the Gearman suites start their own on free ports.\n" +
      "Install it with: apt-get install -y gearman-job-server gearman-tools (it goes to /usr/sbin: add that to PATH)"
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Scratch databases left by a killed run: each is named garivini_test_<pid>_… after the test
 * process that made it; those whose process is gone are dropped (a run going on beside this one
 * keeps its own).
 */
const sweepLeftovers = async (): Promise<void> => {
  const conn = await Mysql.createConnection({ host: mysqlHost, port: mysqlPort, user: "root", password: "" })
  try {
    const [rows] = await conn.query("SHOW DATABASES LIKE 'garivini\\_test\\_%'")
    for (const row of rows as ReadonlyArray<Record<string, string>>) {
      const name = Object.values(row)[0]!
      const pid = Number(/^garivini_test_(\d+)_/.exec(name)?.[1])
      if (Number.isInteger(pid) && pid > 0 && !alive(pid)) await conn.query(`DROP DATABASE IF EXISTS \`${name}\``)
    }
  } finally {
    await conn.end()
  }
}

export default async function setup(): Promise<void> {
  const problems = [await mariaDbProblem(), gearmandProblem()].filter((p) => p !== undefined)
  if (problems.length > 0) {
    throw new Error(
      `${problems.join("\n\n")}\n\nThe unit tests need neither: npm run test:unit runs them alone.`
    )
  }
  await sweepLeftovers()
  buildIfStale(process.cwd())
}
