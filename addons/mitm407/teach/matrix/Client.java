// One request through a proxy with java.net.http.HttpClient (compiled by the matrix).
//
//   java -cp DIR Client URL PROXY_HOST PROXY_PORT [USER PASSWORD] [--ca FILE]
//
// The proxy is set with ProxySelector.of and credentials with an Authenticator
// (the only way HttpClient takes proxy credentials): HttpClient never sends
// them preemptively, it answers the 407. For a CONNECT, the JDK refuses to
// answer a Basic challenge unless jdk.http.auth.tunneling.disabledSchemes
// allows it (default "Basic" since 8u111). Prints STATUS <code> or ERROR.
import java.io.FileInputStream;
import java.net.Authenticator;
import java.net.InetSocketAddress;
import java.net.PasswordAuthentication;
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class Client {
    public static void main(String[] argv) {
        List<String> args = new ArrayList<>(Arrays.asList(argv));
        String ca = takeCa(args);
        try {
            HttpClient.Builder builder = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(20))
                .proxy(ProxySelector.of(new InetSocketAddress(args.get(1), Integer.parseInt(args.get(2)))));
            if (args.size() >= 5) builder.authenticator(proxyAuthenticator(args.get(3), args.get(4).toCharArray()));
            if (ca != null) builder.sslContext(trusting(ca));
            HttpRequest request = HttpRequest.newBuilder(URI.create(args.get(0))).timeout(Duration.ofSeconds(20)).build();
            HttpResponse<String> response = builder.build().send(request, HttpResponse.BodyHandlers.ofString());
            System.out.println("STATUS " + response.statusCode());
        } catch (Exception e) {
            System.out.println("ERROR " + e.getClass().getSimpleName() + ": " + e.getMessage());
            System.exit(1);
        }
    }

    // "--ca FILE" taken out of args (the other arguments are positional); null without it.
    static String takeCa(List<String> args) {
        int at = args.indexOf("--ca");
        if (at < 0) return null;
        String ca = args.get(at + 1);
        args.remove(at + 1);
        args.remove(at);
        return ca;
    }

    // The user's credentials, given only when the proxy asks (a 407), never to a server's 401.
    static Authenticator proxyAuthenticator(final String user, final char[] password) {
        return new Authenticator() {
            @Override
            protected PasswordAuthentication getPasswordAuthentication() {
                if (getRequestorType() != RequestorType.PROXY) return null;
                return new PasswordAuthentication(user, password);
            }
        };
    }

    static SSLContext trusting(String caFile) throws Exception {
        KeyStore store = KeyStore.getInstance(KeyStore.getDefaultType());
        store.load(null, null);
        try (FileInputStream in = new FileInputStream(caFile)) {
            store.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(store);
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(null, tmf.getTrustManagers(), null);
        return context;
    }
}
