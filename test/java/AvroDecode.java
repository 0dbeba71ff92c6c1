/*
 * AvroDecode.java - the test suite's independent decoder of Avro records in
 * the Confluent wire format: Apache Avro's Java library, with each schema
 * fetched by its id from the schema registry, reads what orderflow wrote.
 * Nothing of orderflow's own code is involved, so a record that decodes
 * here is readable by any Confluent-compatible consumer.
 *
 * usage: java -cp CLASSPATH test/java/AvroDecode.java [-r URL]
 *
 * Run by Java's source-file launcher; CLASSPATH holds avro (1.12),
 * jackson-core, jackson-databind, jackson-annotations and slf4j-api, as the
 * registry's application has them (scripts/schema-registry-local fetch
 * prints its directory; the jars are in lib/main/).  test_helper.bash's
 * avro_decode runs it over a whole topic: one JVM per topic read.
 *
 * -r URL  the registry's Confluent-compatible API (default
 *         $SCHEMA_REGISTRY_URL); schemas come from GET URL/schemas/ids/ID,
 *         fetched once an id.
 *
 * Input, on stdin: the records as kcat prints them with
 *
 *     kcat -C -f '%p %o %K %k%R%s' ...
 *
 * that is, for each record: its partition and offset in decimal, a space
 * each; its key's length in decimal (-1: no key) and a space, then the key's
 * bytes; the value's length as a 4-byte big-endian signed integer (-1: a
 * null value), then the value's bytes.  Every length is given before its
 * bytes, so any byte may occur in a key or value.  (kcat -J is no choice:
 * it copies a binary payload into its JSON string unescaped, which makes
 * invalid JSON.)  kcat's -Z would print a null as "NULL" and break the
 * framing: never pass it.
 *
 * Output, on stdout: one JSON object a record, in the order read:
 *
 *     {"partition":0,"offset":7,"key":"o-1","schema_id":3,"value":{...}}
 *
 * key is the key's bytes as UTF-8 (null when there is none).  value is the
 * datum in plain JSON, not Avro's JSON encoding: a record or map is an
 * object, an array an array, an enum its symbol, a union the value of its
 * branch (with no branch name around it), bytes and fixed are base64,
 * int and long exact integers.
 *
 * A record that cannot be read - a value shorter than the 5-byte header, a
 * magic byte other than 0, a schema id the registry does not know (or a
 * registry that does not answer), bytes that do not decode with the schema,
 * bytes left over after the datum, a null value, input cut short - stops
 * the program: the reason, with the record's partition and offset, goes to
 * stderr and the exit status is 1.  The records before it have been
 * printed.  Exit status 2 is a usage error, 0 every record decoded (none
 * is fine).
 */

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.Collection;
import java.util.HashMap;
import java.util.Map;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericFixed;
import org.apache.avro.generic.IndexedRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;

public final class AvroDecode {
	private static final int HEADER_LEN = 5;	/* magic byte, id */
	private static final Duration TIMEOUT = Duration.ofSeconds(10);
	private static final JsonNodeFactory NODES = JsonNodeFactory.instance;
	private static final ObjectMapper JSON = new ObjectMapper();

	/* Why a record cannot be read; the message is the whole reason. */
	static final class Bad extends Exception {
		Bad(String msg) {
			super(msg);
		}
	}

	private final String registry;
	private final HttpClient http = HttpClient.newBuilder()
	    .connectTimeout(TIMEOUT).build();
	/* One reader a schema id: each fetched and parsed once. */
	private final Map<Integer, GenericDatumReader<Object>> readers =
	    new HashMap<>();

	private AvroDecode(String registry) {
		this.registry = registry.replaceAll("/+$", "");
	}

	public static void main(String[] args) {
		String url = System.getenv("SCHEMA_REGISTRY_URL");

		/*
		 * Avro logs through slf4j, and no binding is wanted: without
		 * these slf4j looks for one and says so on stderr, which is for
		 * the reasons records fail.  Set before Avro's first use.
		 */
		System.setProperty("slf4j.provider",
		    "org.slf4j.helpers.NOP_FallbackServiceProvider");
		System.setProperty("slf4j.internal.verbosity", "ERROR");

		for (int i = 0; i < args.length; i++) {
			if (args[i].equals("-r") && i + 1 < args.length)
				url = args[++i];
			else if (args[i].equals("-h") || args[i].equals("--help")) {
				System.out.println("usage: AvroDecode [-r URL]" +
				    " <kcat -f '%p %o %K %k%R%s' output");
				System.exit(0);
			} else
				usage("unknown argument " + args[i]);
		}
		if (url == null || url.isEmpty())
			usage("no registry: give -r URL or set" +
			    " SCHEMA_REGISTRY_URL");
		System.exit(new AvroDecode(url).run(System.in,
		    new FileOutputStream(FileDescriptor.out)));
	}

	private static void usage(String why) {
		System.err.println("AvroDecode: " + why);
		System.err.println("usage: AvroDecode [-r URL]");
		System.exit(2);
	}

	/*
	 * Decodes every record of in onto out: 0, or 1 after the first one
	 * that cannot be read (its reason on stderr, after the records before
	 * it on stdout).
	 */
	private int run(InputStream in, OutputStream out) {
		DataInputStream din = new DataInputStream(
		    new BufferedInputStream(in, 1 << 16));
		OutputStream bout = new BufferedOutputStream(out, 1 << 16);
		String where = "before the first record", why = null;

		try {
			for (;;) {
				long partition = number(din, true);
				if (partition == Long.MIN_VALUE)
					break;
				long offset = number(din, false);
				where = "partition " + partition + " offset " +
				    offset;
				ObjectNode line = record(din, partition, offset);
				bout.write(JSON.writeValueAsBytes(line));
				bout.write('\n');
			}
		} catch (Bad e) {
			why = where + ": " + e.getMessage();
		} catch (EOFException e) {
			why = where + ": the input ends inside a record";
		} catch (IOException e) {
			why = where + ": " + e;
		}
		try {
			bout.flush();
		} catch (IOException e) {
			if (why == null)
				why = "stdout: " + e;
		}
		if (why == null)
			return 0;
		System.err.println("AvroDecode: " + why);
		return 1;
	}

	/*
	 * One record after its partition and offset: its key and value,
	 * read and decoded, as the output's JSON object.
	 */
	private ObjectNode record(DataInputStream in, long partition,
	    long offset) throws Bad, IOException {
		long klen = number(in, false);
		if (klen < -1 || klen > Integer.MAX_VALUE)
			throw new Bad("bad key length " + klen +
			    " in the input: not kcat -f '%p %o %K %k%R%s'?");
		byte[] key = null;
		if (klen >= 0) {
			key = new byte[(int)klen];
			in.readFully(key);
		}
		int vlen = in.readInt();
		if (vlen < -1)
			throw new Bad("bad value length " + vlen +
			    " in the input: not kcat -f '%p %o %K %k%R%s'?");
		if (vlen == -1)
			throw new Bad("null value (a tombstone), not an Avro" +
			    " record");
		byte[] value = new byte[vlen];
		in.readFully(value);

		ObjectNode line = NODES.objectNode();
		line.put("partition", partition);
		line.put("offset", offset);
		if (key == null)
			line.putNull("key");
		else
			line.put("key", new String(key, StandardCharsets.UTF_8));
		decode(value, line);
		return line;
	}

	/*
	 * The wire format: magic byte 0, the schema id (4 bytes, big-endian),
	 * the datum in Avro binary and nothing after it.  Puts schema_id and
	 * value into line.
	 */
	private void decode(byte[] value, ObjectNode line) throws Bad {
		if (value.length < HEADER_LEN)
			throw new Bad(bytes(value.length) + ": shorter than" +
			    " the wire format's 5-byte header");
		if (value[0] != 0)
			throw new Bad(String.format("magic byte 0x%02x, not 0",
			    value[0] & 0xff));
		int id = ByteBuffer.wrap(value, 1, 4).getInt();
		GenericDatumReader<Object> reader = reader(id);

		/*
		 * A direct decoder reads no further ahead than it must, so what
		 * the stream has left afterwards is exactly what the datum did
		 * not use.
		 */
		ByteArrayInputStream body = new ByteArrayInputStream(value,
		    HEADER_LEN, value.length - HEADER_LEN);
		BinaryDecoder dec = DecoderFactory.get().directBinaryDecoder(body,
		    null);
		Object datum;
		try {
			datum = reader.read(null, dec);
		} catch (IOException | RuntimeException | OutOfMemoryError e) {
			throw new Bad("schema id " + id + ": the datum (" +
			    bytes(value.length - HEADER_LEN) +
			    ") does not decode: " + e);
		}
		if (body.available() > 0)
			throw new Bad("schema id " + id + ": " + body.available() +
			    " of " + bytes(value.length - HEADER_LEN) +
			    " left over after the datum");
		line.put("schema_id", id);
		line.set("value", json(datum, reader.getSchema()));
	}

	/* The reader of schema id, from the registry the first time. */
	private GenericDatumReader<Object> reader(int id) throws Bad {
		GenericDatumReader<Object> r = readers.get(id);
		if (r == null) {
			r = new GenericDatumReader<>(fetch(id));
			readers.put(id, r);
		}
		return r;
	}

	/*
	 * GET /schemas/ids/ID: the schema, parsed on its own (a parser
	 * remembers the names it has seen, and two versions of a schema share
	 * theirs).  Only Avro: the answer's schemaType, when present, must say
	 * AVRO.
	 */
	private Schema fetch(int id) throws Bad {
		String url = registry + "/schemas/ids/" + Integer.toUnsignedString(id);
		HttpResponse<String> resp;
		try {
			HttpRequest req = HttpRequest.newBuilder(URI.create(url))
			    .timeout(TIMEOUT)
			    .header("Accept",
			    "application/vnd.schemaregistry.v1+json")
			    .GET().build();
			resp = http.send(req, HttpResponse.BodyHandlers.ofString());
		} catch (IOException | IllegalArgumentException e) {
			throw new Bad("schema id " + id + ": GET " + url + ": " + e);
		} catch (InterruptedException e) {
			Thread.currentThread().interrupt();
			throw new Bad("schema id " + id + ": interrupted");
		}
		if (resp.statusCode() == 404)
			throw new Bad("schema id " + id + " is unknown to the" +
			    " registry: " + resp.body());
		if (resp.statusCode() != 200)
			throw new Bad("schema id " + id + ": GET " + url +
			    ": HTTP " + resp.statusCode() + ": " + resp.body());
		try {
			JsonNode doc = JSON.readTree(resp.body());
			JsonNode type = doc.path("schemaType");
			if (!type.isMissingNode() && !type.isNull() &&
			    !type.asText().equals("AVRO"))
				throw new Bad("schema id " + id + " is of type " +
				    type.asText() + ", not AVRO");
			JsonNode text = doc.path("schema");
			if (!text.isTextual())
				throw new Bad("schema id " + id + ": no schema in" +
				    " the registry's answer: " + resp.body());
			return new Schema.Parser().parse(text.asText());
		} catch (IOException | RuntimeException e) {
			throw new Bad("schema id " + id + ": the registry's" +
			    " schema does not parse: " + e);
		}
	}

	/*
	 * A datum of schema s as plain JSON (see the top of the file).  Unions
	 * resolve to their branch the way the writer chose it.
	 */
	private static JsonNode json(Object d, Schema s) {
		switch (s.getType()) {
		case RECORD: {
			IndexedRecord r = (IndexedRecord)d;
			ObjectNode o = NODES.objectNode();
			for (Schema.Field f : s.getFields())
				o.set(f.name(), json(r.get(f.pos()), f.schema()));
			return o;
		}
		case ARRAY: {
			ArrayNode a = NODES.arrayNode();
			for (Object e : (Collection<?>)d)
				a.add(json(e, s.getElementType()));
			return a;
		}
		case MAP: {
			ObjectNode o = NODES.objectNode();
			for (Map.Entry<?, ?> e : ((Map<?, ?>)d).entrySet())
				o.set(e.getKey().toString(),
				    json(e.getValue(), s.getValueType()));
			return o;
		}
		case UNION:
			return json(d, s.getTypes().get(
			    GenericData.get().resolveUnion(s, d)));
		case ENUM:
		case STRING:
			return NODES.textNode(d.toString());
		case BYTES: {
			ByteBuffer b = ((ByteBuffer)d).duplicate();
			byte[] a = new byte[b.remaining()];
			b.get(a);
			return NODES.textNode(Base64.getEncoder().encodeToString(a));
		}
		case FIXED:
			return NODES.textNode(Base64.getEncoder().encodeToString(
			    ((GenericFixed)d).bytes()));
		case INT:
			return NODES.numberNode((Integer)d);
		case LONG:
			return NODES.numberNode((Long)d);
		case FLOAT:
			return NODES.numberNode((Float)d);
		case DOUBLE:
			return NODES.numberNode((Double)d);
		case BOOLEAN:
			return NODES.booleanNode((Boolean)d);
		case NULL:
			return NODES.nullNode();
		}
		throw new IllegalStateException("Avro type " + s.getType());
	}

	private static String bytes(int n) {
		return n == 1 ? "1 byte" : n + " bytes";
	}

	/*
	 * A decimal number and the space after it.  At the end of the input
	 * before its first byte: Long.MIN_VALUE when eofOk, else EOFException.
	 */
	private static long number(DataInputStream in, boolean eofOk)
	    throws Bad, IOException {
		long n = 0;
		int c = in.read(), digits = 0;
		boolean neg = false;

		if (c == -1) {
			if (eofOk)
				return Long.MIN_VALUE;
			throw new EOFException();
		}
		if (c == '-') {
			neg = true;
			c = in.read();
		}
		for (; c >= '0' && c <= '9' && digits < 18; c = in.read()) {
			n = n * 10 + (c - '0');
			digits++;
		}
		if (c == -1)
			throw new EOFException();
		if (digits == 0 || c != ' ')
			throw new Bad("the input is not kcat -f '%p %o %K %k%R%s'" +
			    " output (byte " + c + " where a number was due)");
		return neg ? -n : n;
	}
}
