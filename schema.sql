-- Garivini's job table: column for column the Perl original's, so that its clients and
-- workers run unchanged on a database made from this file. Applied by `garivini migrate`
-- (idempotent). utf8mb4_bin: unique keys and function names compare exactly (byte for byte,
-- but for trailing spaces: the collation is PAD SPACE).
-- Replication: the QueueRunner claims with SELECT ... FOR UPDATE SKIP LOCKED, which is unsafe
-- under statement-based replication: run replicated shards with binlog_format=ROW.
CREATE TABLE IF NOT EXISTS job (
  jobid BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  funcname VARCHAR(200) NOT NULL,
  arg MEDIUMBLOB,
  uniqkey VARCHAR(255) NULL,
  run_after INT UNSIGNED NOT NULL DEFAULT 0,
  `coalesce` VARCHAR(255) NULL,
  flag ENUM('controller', 'shim') DEFAULT 'shim',
  failcount TINYINT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (jobid),
  INDEX (run_after),
  UNIQUE (funcname, uniqkey)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
