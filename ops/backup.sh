#!/usr/bin/env bash
# Back up every Nocturnus database with `nocturnus backup` (online: the server keeps
# running), into one dated directory, and delete backup directories older than KEEP_DAYS.
#
# cron, as root (it needs the master key from the env file), daily at 03:17:
#   17 3 * * *  /opt/nocturnus/src/ops/backup.sh >>/var/log/nocturnus-backup.log 2>&1
#
# Settings (environment, or in NOCTURNUS_ENV_FILE):
#   NOCTURNUS_DATA_DIR   data directory               [/var/lib/nocturnus]
#   BACKUP_DIR           where dated backups go       [/var/backups/nocturnus]
#   KEEP_DAYS            days of backups to keep      [14]
#   NOCTURNUS_BIN        the nocturnus command        [/opt/nocturnus/venv/bin/nocturnus]
#   NOCTURNUS_ENV_FILE   file with NOCTURNUS_MASTER_KEY=...  [/etc/nocturnus/nocturnus.env]
#
# Backups hold encrypted events and wrapped data keys, never the master key: keep the
# master key somewhere else (restoring needs it). Exit status: 0 when every database was
# backed up, 1 otherwise (the log line names the database).
set -euo pipefail

env_file=${NOCTURNUS_ENV_FILE:-/etc/nocturnus/nocturnus.env}
if [[ -r $env_file ]]; then
  set -a
  # shellcheck disable=SC1090
  source "$env_file"
  set +a
fi
data_dir=${NOCTURNUS_DATA_DIR:-/var/lib/nocturnus}
backup_dir=${BACKUP_DIR:-/var/backups/nocturnus}
keep_days=${KEEP_DAYS:-14}
nocturnus=${NOCTURNUS_BIN:-/opt/nocturnus/venv/bin/nocturnus}

log() { printf '%s nocturnus-backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

if [[ ! -d $data_dir ]]; then
  log "error: no data directory $data_dir"
  exit 1
fi
umask 077
stamp=$(date -u +%Y%m%dT%H%M%SZ)
dest="$backup_dir/$stamp"
mkdir -p "$dest"

failed=0
count=0
shopt -s nullglob
for file in "$data_dir"/*.db; do
  name=$(basename "$file" .db)
  # _system (the database registry) is rebuilt by `nocturnus restore`; dot files are
  # temporary files of a restore or compaction in progress.
  [[ $name == _system || $name == .* ]] && continue
  out="$dest/$name.nocturnus-backup"
  if "$nocturnus" backup --data-dir "$data_dir" --db "$name" --out "$out"; then
    count=$((count + 1))
  else
    log "error: backup of database '$name' failed"
    failed=1
  fi
done

if [[ $failed -eq 0 ]]; then
  touch "$dest/COMPLETE"
  log "backed up $count database(s) to $dest"
  # Only prune after a complete run, and never the newest complete backup.
  find "$backup_dir" -mindepth 1 -maxdepth 1 -type d -name '20*' -mtime "+$keep_days" \
    ! -path "$dest" -exec rm -rf {} +
else
  log "incomplete backup left in $dest (no COMPLETE marker); older backups kept"
fi
exit "$failed"
