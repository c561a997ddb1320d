/*
 * A Kafka-protocol broker for tests: librdkafka's mock cluster (Debian's librdkafka-dev) on loopback.
 *
 *   launcher [--rtt=<ms>] <topic>[:<partitions>] ...
 *
 * Creates one broker and the topics named (1 partition unless given), delays every response by
 * --rtt milliseconds when given (a slow broker, for backpressure tests), prints the bootstrap address
 * (host:port) on one line of stdout, then serves until it is killed or its stdin reaches end of
 * file: a test runner that dies without killing it closes the pipe, so no broker outlives its test.
 * Build: gcc -O2 -o launcher launcher.c -lrdkafka
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* The mock cluster needs a client handle to live in; it is never used to produce or consume. */
  rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    fprintf(stderr, "kafka-mock: cannot create a client handle: %s\n", errstr);
    return 1;
  }
  rd_kafka_mock_cluster_t *cluster = rd_kafka_mock_cluster_new(rk, 1);
  if (!cluster) {
    fprintf(stderr, "kafka-mock: cannot create the mock cluster\n");
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--rtt=", 6) == 0) {
      int rtt = atoi(argv[i] + 6);
      if (rtt < 0 || rd_kafka_mock_broker_set_rtt(cluster, 1, rtt)) {
        fprintf(stderr, "kafka-mock: argument %d: bad round-trip time \"%s\"\n", i, argv[i]);
        return 2;
      }
      continue;
    }
    char name[256];
    int partitions = 1;
    const char *colon = strrchr(argv[i], ':');
    size_t length = colon ? (size_t)(colon - argv[i]) : strlen(argv[i]);
    if (length == 0 || length >= sizeof name) {
      fprintf(stderr, "kafka-mock: argument %d: bad topic name \"%s\"\n", i, argv[i]);
      return 2;
    }
    memcpy(name, argv[i], length);
    name[length] = '\0';
    if (colon) partitions = atoi(colon + 1);
    if (partitions < 1) {
      fprintf(stderr, "kafka-mock: argument %d: bad partition count in \"%s\"\n", i, argv[i]);
      return 2;
    }
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster, name, partitions, 1);
    if (err) {
      fprintf(stderr, "kafka-mock: creating topic \"%s\": %s\n", name, rd_kafka_err2str(err));
      return 1;
    }
  }
  printf("%s\n", rd_kafka_mock_cluster_bootstraps(cluster));
  fflush(stdout);
  char buffer[64];
  while (read(0, buffer, sizeof buffer) > 0) {
  }
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(rk);
  return 0;
}
