// Runs once before every suite: the real servers the integration tests need must be there.
// A missing server fails the run with a message saying how to start it — never a skip.
import { execFileSync } from "node:child_process"
import * as Mysql from "mysql2/promise"
import { buildIfStale } from "./support/build.js"

const mysqlHost = process.env["GARIVINI_TEST_MYSQL_HOST"] ?? "127.0.0.1"
const mysqlPort = Number(process.env["GARIVINI_TEST_MYSQL_PORT"] ?? "3306")

const checkMariaDb = async (): Promise<void> => {
  try {
    const conn = await Mysql.createConnection({ host: mysqlHost, port: mysqlPort, user: "root", password: "", connectTimeout: 5000 })
    await conn.query("SELECT 1")
    await conn.end()
  } catch (cause) {
    throw new Error(
      `MariaDB is not reachable at ${mysqlHost}:${mysqlPort} as root with an empty password (${String(cause)}).\n` +
        `Start it with: start-stop-daemon --start --oknodo --background --exec "$(command -v mariadbd)"`
    )
  }
}

const checkGearmand = (): void => {
  try {
    execFileSync("gearmand", ["--version"], { stdio: "pipe" })
  } catch {
    throw new Error(
      "gearmand is not installed; the Gearman suites start their own on free ports.\n" +
        "Install it with: apt-get install -y gearman-job-server gearman-tools"
    )
  }
}

export default async function setup(): Promise<void> {
  await checkMariaDb()
  checkGearmand()
  buildIfStale(process.cwd())
}
