// One request through a proxy with java.net.HttpURLConnection (compiled by the matrix).
//
//   java -cp DIR UrlConnectionClient URL PROXY_HOST PROXY_PORT [USER PASSWORD] [--ca FILE]
//
// The older JDK client, still what much Java code (and Maven's wagon, JGit) uses: unlike HttpClient
// it answers Basic, Digest, NTLM and Negotiate challenges. Credentials come from a default
// Authenticator (asked only in answer to a 407); Negotiate uses JGSS, which reads the ticket cache
// when run with -Djavax.security.auth.useSubjectCredsOnly=false and the realm's krb5.conf. For a
// CONNECT, jdk.http.auth.tunneling.disabledSchemes (default "Basic") applies as for HttpClient.
// Prints STATUS <code> or ERROR.
import java.io.InputStream;
import java.net.Authenticator;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.Proxy;
import java.net.URI;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import javax.net.ssl.HttpsURLConnection;

public class UrlConnectionClient {
    public static void main(String[] argv) {
        List<String> args = new ArrayList<>(Arrays.asList(argv));
        String ca = Client.takeCa(args);
        try {
            if (args.size() >= 5) Authenticator.setDefault(Client.proxyAuthenticator(args.get(3), args.get(4).toCharArray()));
            Proxy proxy = new Proxy(Proxy.Type.HTTP, new InetSocketAddress(args.get(1), Integer.parseInt(args.get(2))));
            HttpURLConnection c = (HttpURLConnection) URI.create(args.get(0)).toURL().openConnection(proxy);
            c.setConnectTimeout(20000);
            c.setReadTimeout(20000);
            if (ca != null && c instanceof HttpsURLConnection) {
                ((HttpsURLConnection) c).setSSLSocketFactory(Client.trusting(ca).getSocketFactory());
            }
            int status = c.getResponseCode();
            InputStream body = status < 400 ? c.getInputStream() : c.getErrorStream();
            if (body != null) body.readAllBytes();
            System.out.println("STATUS " + status);
        } catch (Exception e) {
            System.out.println("ERROR " + e.getClass().getSimpleName() + ": " + e.getMessage());
            System.exit(1);
        }
    }
}
