#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for tests, CI and the demo.
#
# Usage: deploy/kafka/kafka.sh {fetch|start|stop|status|reset|bootstrap|logs}
#
#   fetch      copy the pinned Kafka jars (deploy/kafka/pom.xml) into $KAFKA_LIBS; no-op when present
#   start      fetch if needed, format KRaft storage once, start the node in the background and wait
#              until it answers a Kafka Metadata request listing itself (exit 1 + log tail if not)
#   stop       SIGTERM (controlled shutdown), wait, then SIGKILL
#   status     print "running ..." (exit 0) or "stopped" (exit 3)
#   reset      stop and delete the node directory (data, logs, config); jars are kept
#   bootstrap  print 127.0.0.1:PORT
#   logs       tail the broker log
#
# Environment (all optional):
#   STREAMPROC_HOME                   default <repo>/var
#   STREAMPROC_KAFKA_DIR              jar cache + node dirs, default $STREAMPROC_HOME/kafka
#   STREAMPROC_KAFKA_PORT             client (PLAINTEXT) port, default 9092
#   STREAMPROC_KAFKA_CONTROLLER_PORT  KRaft controller port, default PORT+1
#   STREAMPROC_KAFKA_NODE_DIR         this node's dir (data/, logs/, pid, config),
#                                     default $STREAMPROC_KAFKA_DIR/node-$PORT, so brokers on
#                                     different ports (dev 9092, tests 19092) never share data
#   STREAMPROC_KAFKA_PARTITIONS       num.partitions for auto-created internal topics' default, 8
#   STREAMPROC_KAFKA_HEAP_OPTS        default "-Xms256m -Xmx512m"
#   STREAMPROC_KAFKA_LOG_LEVEL        log4j level of the broker log file, default WARN
#   STREAMPROC_KAFKA_START_TIMEOUT    seconds to wait for the node to answer, default 60
#   STREAMPROC_KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL, default 30
#   JAVA_HOME                         Java 17 (falls back to `java` on PATH, then the Debian JDK 17)
#
# An authenticated, encrypted listener besides the plaintext one (tests/kafka/test_security.py;
# the PLAINTEXT port stays for the readiness probe and inter-broker traffic):
#   STREAMPROC_KAFKA_BROKER_SASL_SSL_PORT      port of a SASL_SSL listener (unset: none)
#   STREAMPROC_KAFKA_BROKER_KEYSTORE           PKCS12 keystore with the broker's key and certificate
#   STREAMPROC_KAFKA_BROKER_KEYSTORE_PASSWORD  its password (also the key's)
#   STREAMPROC_KAFKA_BROKER_SCRAM_USERS        "user:password[,user:password...]": SCRAM-SHA-256 and
#                                              -512 credentials written at the first format (KRaft),
#                                              and the same users for SASL/PLAIN
#
# Everything listens on 127.0.0.1 only.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

# Fixed cluster id: base64url("streamproc-kafka"), a valid 16-byte Kafka Uuid. Fixed so a
# re-format after `reset` yields the same cluster and logs are comparable across machines.
CLUSTER_ID="c3RyZWFtcHJvYy1rYWZrYQ"
NODE_ID=1

STREAMPROC_HOME="${STREAMPROC_HOME:-$REPO_ROOT/var}"
KAFKA_DIR="${STREAMPROC_KAFKA_DIR:-$STREAMPROC_HOME/kafka}"
KAFKA_LIBS="$KAFKA_DIR/libs"
PORT="${STREAMPROC_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${STREAMPROC_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
NODE_DIR="${STREAMPROC_KAFKA_NODE_DIR:-$KAFKA_DIR/node-$PORT}"
PARTITIONS="${STREAMPROC_KAFKA_PARTITIONS:-8}"
HEAP_OPTS="${STREAMPROC_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
LOG_LEVEL="${STREAMPROC_KAFKA_LOG_LEVEL:-WARN}"
START_TIMEOUT="${STREAMPROC_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${STREAMPROC_KAFKA_STOP_TIMEOUT:-30}"
SASL_SSL_PORT="${STREAMPROC_KAFKA_BROKER_SASL_SSL_PORT:-}"
KEYSTORE="${STREAMPROC_KAFKA_BROKER_KEYSTORE:-}"
KEYSTORE_PASSWORD="${STREAMPROC_KAFKA_BROKER_KEYSTORE_PASSWORD:-}"
SCRAM_USERS="${STREAMPROC_KAFKA_BROKER_SCRAM_USERS:-}"

DATA_DIR="$NODE_DIR/data"
LOG_DIR="$NODE_DIR/logs"
PID_FILE="$NODE_DIR/kafka.pid"
OUT_FILE="$LOG_DIR/kafka.out"
PROPS="$NODE_DIR/server.properties"
LOG4J="$NODE_DIR/log4j.properties"
POM="$SCRIPT_DIR/pom.xml"
STAMP="$KAFKA_LIBS/.fetched"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  elif [[ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ]]; then
    echo /usr/lib/jvm/java-17-openjdk-amd64/bin/java
  else
    die "no java found (install a JDK 17 or set JAVA_HOME)"
  fi
}

# The stamp holds the pom's checksum, so editing the pinned version refetches.
pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

cmd_fetch() {
  if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(pom_sum)" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found (apt-get install maven)"
  log "fetching Kafka jars into $KAFKA_LIBS"
  mkdir -p "$KAFKA_DIR"
  local tmp="$KAFKA_DIR/libs.tmp.$$"
  rm -rf "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DoutputDirectory="$tmp" >&2; then
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed"
  fi
  [[ -n "$(ls "$tmp"/kafka_2.13-*.jar 2>/dev/null)" ]] || die "kafka_2.13 jar missing after fetch"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  pom_sum >"$STAMP"
}

read_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  echo "$pid"
}

# Alive and really our broker (guards against a recycled pid).
is_running() {
  local pid
  pid="$(read_pid)" || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $PROPS" || return 1
}

port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Kafka-protocol readiness check without any client library: send a Metadata v1 request for
# no topics (an empty array) and read the reply's broker count. A KRaft broker lists itself
# only once it is registered and unfenced, i.e. ready to host partitions.
#   request  = size:int32 | api_key=3:int16 | api_version=1:int16 | correlation_id:int32 |
#              client_id:string("kafka.sh") | topics:array(empty, count 0)
#   response = size:int32 | correlation_id:int32 | brokers:array(count:int32, ...) | ...
kafka_ready() {
  # shellcheck disable=SC2016  # the inner script is single-quoted on purpose
  timeout 3 bash -c '
    exec 3<>/dev/tcp/127.0.0.1/'"$PORT"' || exit 1
    printf "\x00\x00\x00\x16\x00\x03\x00\x01\x00\x00\x00\x07\x00\x08kafka.sh\x00\x00\x00\x00" >&3
    reply=$(head -c 12 <&3 | od -An -v -tu1 | tr -s " \n" " ")
    exec 3>&-
    read -r -a b <<<"$reply"
    [[ ${#b[@]} -eq 12 ]] || exit 1
    # correlation id 7, broker count >= 1
    [[ ${b[4]} -eq 0 && ${b[5]} -eq 0 && ${b[6]} -eq 0 && ${b[7]} -eq 7 ]] || exit 1
    count=$(( (b[8] << 24) | (b[9] << 16) | (b[10] << 8) | b[11] ))
    [[ $count -ge 1 ]]
  ' 2>/dev/null
}

# Settings of the optional SASL_SSL listener (appended to server.properties).
sasl_ssl_config() {
  [[ -n "$SASL_SSL_PORT" ]] || return 0
  [[ -n "$KEYSTORE" && -f "$KEYSTORE" ]] || die "STREAMPROC_KAFKA_BROKER_KEYSTORE: no keystore file"
  [[ -n "$SCRAM_USERS" ]] || die "STREAMPROC_KAFKA_BROKER_SCRAM_USERS: no users for the SASL listener"
  local plain_users="" pair
  local -a pairs
  IFS=',' read -r -a pairs <<<"$SCRAM_USERS"
  for pair in "${pairs[@]}"; do
    plain_users+=" user_${pair%%:*}=\"${pair#*:}\""
  done
  cat <<EOF

# SASL_SSL listener: TLS with the given keystore, SCRAM-SHA-256/512 and PLAIN logins.
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required${plain_users};
ssl.keystore.type=PKCS12
ssl.keystore.location=$KEYSTORE
ssl.keystore.password=$KEYSTORE_PASSWORD
ssl.key.password=$KEYSTORE_PASSWORD
EOF
}

write_config() {
  mkdir -p "$DATA_DIR" "$LOG_DIR"
  local listeners="PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT"
  local advertised="PLAINTEXT://127.0.0.1:$PORT"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [[ -n "$SASL_SSL_PORT" ]]; then
    listeners+=",SASL_SSL://127.0.0.1:$SASL_SSL_PORT"
    advertised+=",SASL_SSL://127.0.0.1:$SASL_SSL_PORT"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  cat >"$PROPS" <<EOF
# Written by deploy/kafka/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$NODE_ID@127.0.0.1:$CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$DATA_DIR

# Topics are created explicitly (streamproc.broker.ensure_topics), never by a typo.
auto.create.topics.enable=false
num.partitions=$PARTITIONS
default.replication.factor=1
min.insync.replicas=1
# Record timestamps are the broker's append time, whatever the producer sent.
log.message.timestamp.type=LogAppendTime

# Single node: internal topics with replication factor 1, few partitions.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
# Consumer groups (Faust workers) start at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0

# Light on a 2-core machine.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.segment.bytes=67108864
log.retention.hours=24
log.retention.check.interval.ms=60000
EOF
  sasl_ssl_config >>"$PROPS"
  chmod 600 "$PROPS" # it may hold the keystore password
  cat >"$LOG4J" <<EOF
# Broker log goes to a file only; quiet by default (STREAMPROC_KAFKA_LOG_LEVEL).
log4j.rootLogger=$LOG_LEVEL, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$LOG_DIR/server.log
log4j.appender.file.MaxFileSize=10MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
# Lifecycle lines ("Kafka Server started", shutdown) are kept at INFO to read start-up failures.
log4j.logger.kafka.Kafka\$=INFO
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
log4j.logger.kafka.server.ControllerServer=INFO
log4j.logger.kafka.server.SharedServer=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
EOF
}

classpath() { echo "$KAFKA_LIBS/*"; }

format_storage() {
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  log "formatting KRaft storage in $DATA_DIR (cluster id $CLUSTER_ID)"
  # SCRAM credentials live in the KRaft metadata: written once, at format time
  local -a scram=() pairs
  local pair mech
  if [[ -n "$SCRAM_USERS" ]]; then
    IFS=',' read -r -a pairs <<<"$SCRAM_USERS"
    for pair in "${pairs[@]}"; do
      for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
        scram+=(--add-scram "$mech=[name=${pair%%:*},password=${pair#*:}]")
      done
    done
  fi
  "$(java_bin)" -Xmx256m -Dlog4j.configuration="file:$LOG4J" -cp "$(classpath)" \
    kafka.tools.StorageTool format --config "$PROPS" --cluster-id "$CLUSTER_ID" \
    --ignore-formatted "${scram[@]}" >>"$OUT_FILE" 2>&1 || { tail -n 30 "$OUT_FILE" >&2; die "storage format failed"; }
}

show_tail() {
  log "---- last lines of $LOG_DIR/server.log ----"
  tail -n 40 "$LOG_DIR/server.log" >&2 2>/dev/null || true
  log "---- last lines of $OUT_FILE ----"
  tail -n 20 "$OUT_FILE" >&2 2>/dev/null || true
}

cmd_start() {
  if is_running; then
    if kafka_ready; then
      log "already running (pid $(read_pid)) on 127.0.0.1:$PORT"
      echo "127.0.0.1:$PORT"
      return 0
    fi
    log "running (pid $(read_pid)) but not answering yet; waiting"
  else
    rm -f "$PID_FILE"
    for p in "$PORT" "$CONTROLLER_PORT" ${SASL_SSL_PORT:+"$SASL_SSL_PORT"}; do
      port_open "$p" && die "127.0.0.1:$p is already in use by another process"
    done
    cmd_fetch
    write_config
    format_storage
    local java
    java="$(java_bin)"
    log "starting Kafka on 127.0.0.1:$PORT (controller $CONTROLLER_PORT), node dir $NODE_DIR"
    # shellcheck disable=SC2086  # HEAP_OPTS is a list of JVM flags
    nohup "$java" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dlog4j.configuration="file:$LOG4J" -Dkafka.logs.dir="$LOG_DIR" \
      -cp "$(classpath)" kafka.Kafka "$PROPS" </dev/null >>"$OUT_FILE" 2>&1 &
    echo $! >"$PID_FILE"
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    # kill -0, not is_running: right after the fork the child may not have exec'd java
    # yet, so its command line does not match for a moment.
    if ! kill -0 "$(read_pid)" 2>/dev/null; then
      show_tail
      die "Kafka exited during start-up"
    fi
    if kafka_ready; then
      log "ready on 127.0.0.1:$PORT (pid $(read_pid))"
      echo "127.0.0.1:$PORT"
      return 0
    fi
    sleep 0.5
  done
  show_tail
  cmd_stop || true
  die "Kafka did not answer on 127.0.0.1:$PORT within ${START_TIMEOUT}s"
}

cmd_stop() {
  local pid
  if ! is_running; then
    rm -f "$PID_FILE"
    log "not running"
    return 0
  fi
  pid="$(read_pid)"
  log "stopping Kafka (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
}

cmd_status() {
  if is_running; then
    if kafka_ready; then
      echo "running (pid $(read_pid), 127.0.0.1:$PORT)"
    else
      echo "running (pid $(read_pid), 127.0.0.1:$PORT, not answering yet)"
    fi
    return 0
  fi
  echo "stopped"
  return 3
}

cmd_reset() {
  cmd_stop
  log "deleting $NODE_DIR"
  rm -rf "$NODE_DIR"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  bootstrap) echo "127.0.0.1:$PORT" ;;
  logs) tail -n "${2:-100}" "$LOG_DIR/server.log" ;;
  *)
    echo "usage: $0 {fetch|start|stop|status|reset|bootstrap|logs [N]}" >&2
    exit 2
    ;;
esac
