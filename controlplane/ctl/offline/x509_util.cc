#include "controlplane/ctl/offline/x509_util.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace mxedge::ctl::offline {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr mem_bio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Never prompts for a pass phrase (the default callback would read the terminal).
int no_passphrase(char*, int, int, void*) { return -1; }

std::string time_text(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return {};
  char buf[32];
  if (std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) return {};
  return buf;
}

std::string name_text(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || name == nullptr || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return {};
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

bool is_end_of_pem(unsigned long e) {
  return e == 0 || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
}

}  // namespace

bool read_file(const std::string& path, size_t max_bytes, std::string* out, std::string* error) {
  out->clear();
  if (path.empty()) {
    *error = "no file name given";
    return false;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    *error = "cannot read " + path + ": " + (S_ISDIR(st.st_mode) ? std::string("is a directory") : std::strerror(errno));
    ::close(fd);
    return false;
  }
  char buf[16384];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = "cannot read " + path + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > max_bytes) {
      *error = path + " is larger than " + std::to_string(max_bytes) + " bytes";
      ::close(fd);
      return false;
    }
  }
  ::close(fd);
  return true;
}

std::vector<X509Ptr> parse_pem_certificates(const std::string& pem, const std::string& what, std::string* error) {
  std::vector<X509Ptr> certs;
  BioPtr bio = mem_bio(pem);
  if (!bio) {
    *error = "out of memory";
    return {};
  }
  ERR_clear_error();
  while (true) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr);
    if (x == nullptr) break;
    certs.emplace_back(x);
  }
  const unsigned long e = ERR_peek_last_error();
  if (!is_end_of_pem(e)) {
    const std::string detail = openssl_errors();
    *error = "certificate " + std::to_string(certs.size() + 1) + " in " + what + " does not parse" +
             (detail.empty() ? "" : ": " + detail);
    return {};
  }
  ERR_clear_error();
  if (certs.empty()) {
    *error = "no PEM certificate in " + what;
    return {};
  }
  return certs;
}

std::vector<X509Ptr> load_pem_certificates(const std::string& path, std::string* error) {
  std::string text;
  if (!read_file(path, 16u << 20, &text, error)) return {};
  return parse_pem_certificates(text, path, error);
}

PkeyPtr load_pem_key(const std::string& path, std::string* error) {
  std::string text;
  if (!read_file(path, 1u << 20, &text, error)) return nullptr;
  ERR_clear_error();
  if (BioPtr bio = mem_bio(text)) {
    if (EVP_PKEY* k = PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr)) {
      ERR_clear_error();
      return PkeyPtr(k);
    }
  }
  const std::string private_error = openssl_errors();
  if (BioPtr bio = mem_bio(text)) {
    if (EVP_PKEY* k = PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr)) {
      ERR_clear_error();
      return PkeyPtr(k);
    }
  }
  ERR_clear_error();
  if (text.find("ENCRYPTED") != std::string::npos) {
    *error = path + " holds an encrypted private key (give the unencrypted key or its public key)";
  } else if (text.find("PRIVATE KEY-----") == std::string::npos && text.find("PUBLIC KEY-----") == std::string::npos &&
             text.find("CERTIFICATE-----") != std::string::npos) {
    *error = path + " holds a certificate, not a key (give the key, or the certificate with --next-cert)";
  } else if (text.find("-----BEGIN") == std::string::npos) {
    *error = "no PEM key in " + path;
  } else {
    *error = "no usable PEM private or public key in " + path + (private_error.empty() ? "" : ": " + private_error);
  }
  return nullptr;
}

std::vector<uint8_t> cert_der(X509* cert) {
  unsigned char* p = nullptr;
  const int n = i2d_X509(cert, &p);
  if (n <= 0) return {};
  std::vector<uint8_t> out(p, p + n);
  OPENSSL_free(p);
  return out;
}

std::vector<uint8_t> spki_der(X509* cert) {
  unsigned char* p = nullptr;
  const int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &p);
  if (n <= 0) return {};
  std::vector<uint8_t> out(p, p + n);
  OPENSSL_free(p);
  return out;
}

std::vector<uint8_t> spki_der(EVP_PKEY* key) {
  unsigned char* p = nullptr;
  const int n = i2d_PUBKEY(key, &p);
  if (n <= 0) return {};
  std::vector<uint8_t> out(p, p + n);
  OPENSSL_free(p);
  return out;
}

std::optional<std::vector<uint8_t>> tlsa_digest(const std::vector<uint8_t>& selected, uint8_t mtype) {
  if (mtype == 0) return selected;
  const EVP_MD* md = mtype == 1 ? EVP_sha256() : mtype == 2 ? EVP_sha512() : nullptr;
  if (md == nullptr) return std::nullopt;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(selected.data(), selected.size(), out, &len, md, nullptr) != 1) return std::nullopt;
  return std::vector<uint8_t>(out, out + len);
}

std::string subject_of(X509* cert) { return name_text(X509_get_subject_name(cert)); }
std::string issuer_of(X509* cert) { return name_text(X509_get_issuer_name(cert)); }
std::string not_before_of(X509* cert) { return time_text(X509_get0_notBefore(cert)); }
std::string not_after_of(X509* cert) { return time_text(X509_get0_notAfter(cert)); }

std::vector<std::string> dns_names_of(X509* cert) {
  std::vector<std::string> names;
  auto* gens = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (gens == nullptr) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(gens); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens, i);
    if (g->type != GEN_DNS) continue;
    const ASN1_IA5STRING* s = g->d.dNSName;
    names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(gens);
  return names;
}

std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

}  // namespace mxedge::ctl::offline
