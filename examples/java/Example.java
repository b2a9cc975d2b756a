// pg_cache from Java 17 with the PostgreSQL JDBC driver: a read-through cache, bytes and JSON,
// and removal. PG_CACHE_URL selects the database (default: the cluster `make run` starts).
// Exits non-zero on any unexpected result.

import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.Arrays;
import java.util.concurrent.Callable;

public final class Example {
    record Lookup(byte[] value, boolean hit) {}

    static void expect(boolean condition, String what) {
        if (!condition) {
            System.err.println("unexpected: " + what);
            System.exit(1);
        }
    }

    /** postgresql://user@host:port/db into jdbc:postgresql://host:port/db?user=user */
    static String jdbcUrl(String url) {
        URI uri = URI.create(url);
        String user = uri.getUserInfo() == null ? "postgres" : uri.getUserInfo().split(":")[0];
        return "jdbc:postgresql://" + uri.getHost() + ":" + (uri.getPort() < 0 ? 5432 : uri.getPort()) + uri.getPath() + "?user=" + user;
    }

    static byte[] get(Connection connection, String key) throws SQLException {
        try (PreparedStatement statement = connection.prepareStatement("SELECT cache_get(?)")) {
            statement.setString(1, key);
            try (ResultSet rows = statement.executeQuery()) {
                rows.next();
                return rows.getBytes(1);
            }
        }
    }

    /** ttl and sliding are intervals such as "10 minutes", or null. */
    static void set(Connection connection, String key, byte[] value, String ttl, String sliding) throws SQLException {
        try (PreparedStatement statement =
                connection.prepareStatement("SELECT cache_set(?, ?, ttl => ?::interval, sliding => ?::interval)")) {
            statement.setString(1, key);
            statement.setBytes(2, value);
            statement.setString(3, ttl);
            statement.setString(4, sliding);
            statement.execute();
        }
    }

    static boolean remove(Connection connection, String key) throws SQLException {
        try (PreparedStatement statement = connection.prepareStatement("SELECT cache_remove(?)")) {
            statement.setString(1, key);
            try (ResultSet rows = statement.executeQuery()) {
                rows.next();
                return rows.getBoolean(1);
            }
        }
    }

    /** The cached value of key, or the loader's, stored for next time. */
    static Lookup getOrSet(Connection connection, String key, Callable<byte[]> loader, String ttl, String sliding) throws Exception {
        byte[] cached = get(connection, key);
        if (cached != null) {
            return new Lookup(cached, true);
        }
        byte[] value = loader.call();
        set(connection, key, value, ttl, sliding);
        return new Lookup(value, false);
    }

    static byte[] slowQuery() throws InterruptedException {
        Thread.sleep(300); // stands in for an expensive query
        return "monthly report: 42 orders".getBytes(StandardCharsets.UTF_8);
    }

    public static void main(String[] args) throws Exception {
        String url = System.getenv().getOrDefault("PG_CACHE_URL", "postgresql://postgres@127.0.0.1:5499/pg_cache");
        try (Connection connection = DriverManager.getConnection(jdbcUrl(url))) {
            remove(connection, "example:java:report");

            // 1. read-through: a miss runs the loader, the next read is a hit
            for (boolean expectedHit : new boolean[] {false, true}) {
                long started = System.nanoTime();
                Lookup lookup = getOrSet(connection, "example:java:report", Example::slowQuery, "10 minutes", "2 minutes");
                double ms = (System.nanoTime() - started) / 1e6;
                String text = new String(lookup.value(), StandardCharsets.UTF_8);
                System.out.printf("%s %7.1f ms  %s%n", lookup.hit() ? "hit " : "miss", ms, text);
                expect(text.equals("monthly report: 42 orders"), "read-through value");
                expect(lookup.hit() == expectedHit, "hit should be " + expectedHit);
            }

            // 2. bytes round-trip exactly; JSON travels as UTF-8 bytes
            byte[] blob = new byte[256];
            for (int i = 0; i < blob.length; i++) {
                blob[i] = (byte) i;
            }
            set(connection, "example:java:blob", blob, "1 minute", null);
            byte[] stored = get(connection, "example:java:blob");
            expect(Arrays.equals(stored, blob), "binary value round trip");
            System.out.println("bytes: " + stored.length + " bytes back, identical");

            String json = "{\"user\":42,\"roles\":[\"admin\",\"dev\"],\"name\":\"Zoë\"}";
            set(connection, "example:java:json", json.getBytes(StandardCharsets.UTF_8), null, "5 minutes");
            String back = new String(get(connection, "example:java:json"), StandardCharsets.UTF_8);
            expect(back.equals(json), "JSON round trip");
            System.out.println("json: " + back);

            // 3. remove, then a miss
            boolean removed = remove(connection, "example:java:report");
            expect(removed && get(connection, "example:java:report") == null, "remove then miss");
            System.out.println("removed: the next read is a miss");
        }
        System.out.println("java example: ok");
    }
}
