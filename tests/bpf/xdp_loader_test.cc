// The loader in dataplane/xdp: prefix parsing, config validation, pinning and reuse across restarts,
// the map API, and attaching (native, generic fallback, foreign and stale programs, clean detach). The
// attach tests run in a private network namespace of this test process, on a veth pair and on its
// loopback device, which vanish with the process; pinning uses a private bpf filesystem.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "dataplane/xdp/ip_prefix.h"
#include "dataplane/xdp/xdp_config.h"
#include "dataplane/xdp/xdp_program.h"
#include "tests/bpf/bpf_test_env.h"
#include "tests/bpf/expect_ok.h"
#include "tests/bpf/packet_builder.h"

namespace mxedge::bpftest {
namespace {

using xdp::IpPrefix;

TEST(IpPrefixTest, ParsesCanonically) {
  const std::pair<const char*, const char*> cases[] = {
      {"192.0.2.0/24", "192.0.2.0/24"},
      {"192.0.2.7", "192.0.2.7/32"},
      {"0.0.0.0/0", "0.0.0.0/0"},
      {"10.0.0.0/8", "10.0.0.0/8"},
      {"2001:db8::/32", "2001:db8::/32"},
      {"2001:DB8::1", "2001:db8::1/128"},
      {"::/0", "::/0"},
      {"fd00::/8", "fd00::/8"},
      {"192.0.2.128/25", "192.0.2.128/25"},
      {"2001:db8:0:0:8000::/65", "2001:db8:0:0:8000::/65"},
  };
  for (auto [text, canonical] : cases) {
    auto p = IpPrefix::parse(text);
    ASSERT_TRUE(p) << text;
    EXPECT_EQ(p->to_string(), canonical);
    EXPECT_EQ(IpPrefix::parse(p->to_string()), p);
  }
  EXPECT_TRUE(IpPrefix::parse("192.0.2.0/24")->is_ipv4());
  EXPECT_FALSE(IpPrefix::parse("2001:db8::/32")->is_ipv4());
}

TEST(IpPrefixTest, RejectsWhatIsNotAPrefix) {
  for (const char* text :
       {"", "/24", "192.0.2.0/", "192.0.2.0/33", "2001:db8::/129", "192.0.2.1/24", "2001:db8::1/64", "192.0.2.0/24x",
        "192.0.2.0/-1", "192.0.2", "host.example", "192.0.2.0/0024", "192.0.2.0 /24", "1.2.3.4.5", "2001:db8::g"}) {
    EXPECT_FALSE(IpPrefix::parse(text)) << '"' << text << '"';
  }
}

TEST(XdpConfigTest, DefaultsAreValid) { MXEDGE_EXPECT_OK(xdp::validate(xdp::XdpConfig{})); }

TEST(XdpConfigTest, RejectsEachMistake) {
  struct Bad {
    const char* what;
    void (*edit)(xdp::XdpConfig&);
  };
  const Bad cases[] = {
      {"no ports", [](xdp::XdpConfig& c) { c.smtp_ports.clear(); }},
      {"port 0",
       [](xdp::XdpConfig& c) {
         c.smtp_ports = {25, 0};
       }},
      {"duplicate port",
       [](xdp::XdpConfig& c) {
         c.smtp_ports = {25, 25};
       }},
      {"9 ports", [](xdp::XdpConfig& c) { c.smtp_ports = {1, 2, 3, 4, 5, 6, 7, 8, 9}; }},
      {"bad local", [](xdp::XdpConfig& c) { c.local_addresses = {"192.0.2.1/24"}; }},
      {"bad allow", [](xdp::XdpConfig& c) { c.allowlist = {"nope"}; }},
      {"bad block", [](xdp::XdpConfig& c) { c.blocklist = {"2001:db8::/200"}; }},
      {"burst 0", [](xdp::XdpConfig& c) { c.syn_burst = 0; }},
      {"duplicate CPU",
       [](xdp::XdpConfig& c) {
         c.worker_cpus = {0, 0};
       }},
      {"CPU out of range", [](xdp::XdpConfig& c) { c.worker_cpus = {MXEDGE_MAX_CPUS}; }},
      {"qsize 0", [](xdp::XdpConfig& c) { c.cpumap_qsize = 0; }},
      {"qsize huge", [](xdp::XdpConfig& c) { c.cpumap_qsize = 100000; }},
      {"interface name", [](xdp::XdpConfig& c) { c.interfaces = {"a-name-longer-than-ifnamsiz"}; }},
      {"interface twice",
       [](xdp::XdpConfig& c) {
         c.interfaces = {"eth0", "eth0"};
       }},
  };
  for (const auto& bad : cases) {
    xdp::XdpConfig c;
    bad.edit(c);
    xdp::Status s = xdp::validate(c);
    EXPECT_FALSE(s.ok()) << bad.what;
    EXPECT_EQ(s.err(), EINVAL) << bad.what;
    EXPECT_NE(s.context().find("xdp config:"), std::string::npos) << s.to_string();
  }
  xdp::XdpConfig off;
  off.syn_rate = 0;
  off.syn_burst = 0;  // no limit: no burst needed
  MXEDGE_EXPECT_OK(xdp::validate(off));
}

std::vector<uint8_t> blocked_syn() {
  return PacketBuilder().ipv4("203.0.113.9", "192.0.2.1").tcp(40000, 25, kSyn).bytes();
}

class XdpPinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MXEDGE_ASSERT_OK(fs_.create());
    dir_ = fs_.path() + "/sys/mxedge";  // nested: the loader creates missing directories
  }
  xdp::XdpConfig config() {
    xdp::XdpConfig c = base_config();
    c.pin_dir = dir_;
    c.smtp_ports = {25, 2525};
    c.blocklist = {"203.0.113.0/24"};
    return c;
  }
  TempBpffs fs_;
  std::string dir_;
};

TEST_F(XdpPinTest, EveryMapIsPinnedButTheProgramsOwnData) {
  xdp::XdpProgram prog;
  MXEDGE_ASSERT_OK(prog.start(config()));
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) names.insert(e.path().filename());
  const std::set<std::string> want = {"config",   "source_lists_v4", "source_lists_v6", "local_v4",
                                      "local_v6", "syn_buckets",     "counters",        "worker_cpumap",
                                      "new_source_tat"};
  EXPECT_EQ(names, want);
}

TEST_F(XdpPinTest, RestartKeepsListsCountersAndConfig) {
  {
    xdp::XdpProgram first;
    MXEDGE_ASSERT_OK(first.start(config()));
    MXEDGE_ASSERT_OK(first.add_prefix(xdp::PrefixList::kBlock, "2001:db8:bad::/48"));  // added at runtime
    MXEDGE_ASSERT_OK(first.add_prefix(xdp::PrefixList::kAllow, "203.0.113.77"));
    for (int i = 0; i < 3; ++i) ASSERT_EQ(test_run(first.prog_fd(), blocked_syn()).retval, XDP_DROP);
  }  // the data plane stops; the maps stay pinned

  xdp::XdpProgram second;
  xdp::XdpProgramOptions options;
  options.pin_dir = dir_;
  MXEDGE_ASSERT_OK(second.open(options));
  MXEDGE_ASSERT_OK(second.load());
  // Before any apply(): the previous run's config and lists are in force.
  EXPECT_EQ(second.config().smtp_ports[1], 2525);
  std::vector<IpPrefix> blocked, allowed;
  MXEDGE_ASSERT_OK(second.list_prefixes(xdp::PrefixList::kBlock, &blocked));
  MXEDGE_ASSERT_OK(second.list_prefixes(xdp::PrefixList::kAllow, &allowed));
  std::set<std::string> texts;
  for (const auto& p : blocked) texts.insert(p.to_string());
  EXPECT_EQ(texts, (std::set<std::string>{"203.0.113.0/24", "2001:db8:bad::/48"}));
  ASSERT_EQ(allowed.size(), 1u);
  EXPECT_EQ(allowed[0].to_string(), "203.0.113.77/32");
  xdp::XdpCounters c;
  MXEDGE_ASSERT_OK(second.read_counters(&c));
  EXPECT_EQ(c.packets(MXEDGE_CTR_DROP_BLOCKLIST), 3u);

  // The restarted program drops with the kept list and keeps counting.
  MXEDGE_ASSERT_OK(second.apply(config()));
  EXPECT_EQ(test_run(second.prog_fd(), blocked_syn()).retval, static_cast<uint32_t>(XDP_DROP));
  MXEDGE_ASSERT_OK(second.read_counters(&c));
  EXPECT_EQ(c.packets(MXEDGE_CTR_DROP_BLOCKLIST), 4u);
}

TEST_F(XdpPinTest, PinnedMapWithAnOldLayoutIsReplaced) {
  ASSERT_EQ(mkdir((fs_.path() + "/sys").c_str(), 0700), 0);
  ASSERT_EQ(mkdir(dir_.c_str(), 0700), 0);
  // An older build's counters: an array of 8 plain u64.
  int old = bpf_map_create(BPF_MAP_TYPE_ARRAY, "counters", 4, 8, 8, nullptr);
  ASSERT_GE(old, 0);
  uint32_t key = 0;
  uint64_t value = 12345;
  ASSERT_EQ(bpf_map_update_elem(old, &key, &value, BPF_ANY), 0);
  ASSERT_EQ(bpf_obj_pin(old, (dir_ + "/counters").c_str()), 0);
  close(old);

  xdp::XdpProgram prog;
  MXEDGE_ASSERT_OK(prog.start(config()));
  xdp::XdpCounters c;
  MXEDGE_ASSERT_OK(prog.read_counters(&c));
  EXPECT_EQ(c.all_packets(), 0u);
  int pinned = bpf_obj_get((dir_ + "/counters").c_str());
  ASSERT_GE(pinned, 0);
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  ASSERT_EQ(bpf_obj_get_info_by_fd(pinned, &info, &len), 0);
  close(pinned);
  EXPECT_EQ(info.type, static_cast<uint32_t>(BPF_MAP_TYPE_PERCPU_ARRAY));
  EXPECT_EQ(info.value_size, sizeof(mxedge_counters));
}

TEST_F(XdpPinTest, PinDirectoryOutsideABpfFilesystemIsAnError) {
  char tmpl[] = "/tmp/mxedge-notbpf-XXXXXX";
  ASSERT_TRUE(mkdtemp(tmpl));
  xdp::XdpConfig c = config();
  c.pin_dir = std::string(tmpl) + "/mxedge";
  xdp::XdpProgram prog;
  xdp::Status s = prog.start(c);
  EXPECT_EQ(s.err(), EOPNOTSUPP) << s.to_string();
  EXPECT_NE(s.context().find("mount -t bpf"), std::string::npos) << s.to_string();
  rmdir(tmpl);
}

class XdpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    xdp::XdpProgramOptions options;
    options.pin_dir = "";
    MXEDGE_ASSERT_OK(prog_.open(options));
    MXEDGE_ASSERT_OK(prog_.load());
    MXEDGE_ASSERT_OK(prog_.apply(base_config()));
  }
  std::set<std::string> listed(xdp::PrefixList list) {
    std::vector<IpPrefix> v;
    xdp::Status s = prog_.list_prefixes(list, &v);
    EXPECT_TRUE(s.ok()) << s.to_string();
    std::set<std::string> out;
    for (const auto& p : v) out.insert(p.to_string());
    return out;
  }
  xdp::XdpProgram prog_;
};

TEST_F(XdpApiTest, PrefixListsAddListRemove) {
  for (auto list : {xdp::PrefixList::kAllow, xdp::PrefixList::kBlock, xdp::PrefixList::kLocal}) {
    EXPECT_TRUE(listed(list).empty());
    MXEDGE_ASSERT_OK(prog_.add_prefix(list, "192.0.2.0/24"));
    MXEDGE_ASSERT_OK(prog_.add_prefix(list, "192.0.2.7"));
    MXEDGE_ASSERT_OK(prog_.add_prefix(list, "2001:db8::/32"));
    MXEDGE_ASSERT_OK(prog_.add_prefix(list, "2001:db8::/32"));  // again: no duplicate
    EXPECT_EQ(listed(list), (std::set<std::string>{"192.0.2.0/24", "192.0.2.7/32", "2001:db8::/32"}));
    MXEDGE_ASSERT_OK(prog_.remove_prefix(list, "192.0.2.7/32"));
    EXPECT_EQ(listed(list), (std::set<std::string>{"192.0.2.0/24", "2001:db8::/32"}));
    xdp::Status absent = prog_.remove_prefix(list, "198.51.100.0/24");
    EXPECT_EQ(absent.err(), ENOENT) << absent.to_string();
    xdp::Status bad = prog_.add_prefix(list, "192.0.2.1/24");
    EXPECT_EQ(bad.err(), EINVAL) << bad.to_string();
  }
  // Local addresses decide the "any" flags.
  EXPECT_EQ(prog_.config().flags & (MXEDGE_CFG_LOCAL_V4_ANY | MXEDGE_CFG_LOCAL_V6_ANY), 0u);
  MXEDGE_ASSERT_OK(prog_.set_local_addresses({}));
  EXPECT_TRUE(listed(xdp::PrefixList::kLocal).empty());
  EXPECT_EQ(prog_.config().flags & (MXEDGE_CFG_LOCAL_V4_ANY | MXEDGE_CFG_LOCAL_V6_ANY),
            MXEDGE_CFG_LOCAL_V4_ANY | MXEDGE_CFG_LOCAL_V6_ANY);
}

TEST_F(XdpApiTest, SettingsReachTheConfigMap) {
  MXEDGE_ASSERT_OK(prog_.set_rate_limit(10, 3));
  EXPECT_EQ(prog_.config().syn_interval_ns, 100000000u);
  EXPECT_EQ(prog_.config().syn_burst_ns, 200000000u);
  MXEDGE_ASSERT_OK(prog_.set_rate_limit(0, 0));
  EXPECT_EQ(prog_.config().syn_interval_ns, 0u);
  EXPECT_EQ(prog_.set_rate_limit(5, 0).err(), EINVAL);

  const uint16_t ports[] = {25, 2525};
  MXEDGE_ASSERT_OK(prog_.set_smtp_ports(ports));
  EXPECT_EQ(prog_.config().smtp_ports[1], 2525);
  EXPECT_EQ(prog_.config().smtp_ports[2], 0);
  const uint16_t dup[] = {25, 25};
  EXPECT_EQ(prog_.set_smtp_ports(dup).err(), EINVAL);

  MXEDGE_ASSERT_OK(prog_.set_steering(false));
  EXPECT_EQ(prog_.config().flags & MXEDGE_CFG_STEERING, 0u);

  // What the program reads is what config() reports.
  mxedge_config in_map{};
  uint32_t zero = 0;
  ASSERT_EQ(bpf_map_lookup_elem(prog_.map_fd("config"), &zero, &in_map), 0);
  EXPECT_EQ(std::memcmp(&in_map, &prog_.config(), sizeof in_map), 0);
}

TEST_F(XdpApiTest, WorkerSetManagesCpumapEntries) {
  int cpumap = prog_.map_fd("worker_cpumap");
  auto entry = [&](uint32_t cpu) -> int {
    bpf_cpumap_val v{};
    return bpf_map_lookup_elem(cpumap, &cpu, &v) == 0 ? static_cast<int>(v.qsize) : -1;
  };
  const unsigned all = possible_cpus();
  for (uint32_t cpu = 0; cpu < all; ++cpu) EXPECT_EQ(entry(cpu), 64) << cpu;  // base_config: every CPU
  const unsigned one[] = {0};
  MXEDGE_ASSERT_OK(prog_.set_workers(one, 128));
  EXPECT_EQ(entry(0), 128);
  for (uint32_t cpu = 1; cpu < all; ++cpu) EXPECT_EQ(entry(cpu), -1) << cpu;
  EXPECT_EQ(prog_.config().worker_count, 1u);
  const unsigned missing[] = {all};  // not a possible CPU
  EXPECT_EQ(prog_.set_workers(missing, 64).err(), EINVAL);
}

TEST_F(XdpApiTest, CountersAreKeptPerCpuAndSummed) {
  auto frame = PacketBuilder().ipv4("203.0.113.1", "192.0.2.1").tcp(1, 80, kAck).bytes();
  const unsigned cpus = std::min(possible_cpus(), 2u);
  for (unsigned cpu = 0; cpu < cpus; ++cpu) {
    ASSERT_TRUE(pin_to_cpu(cpu));
    for (unsigned i = 0; i <= cpu; ++i) ASSERT_EQ(test_run(prog_.prog_fd(), frame).err, 0);
  }
  xdp::XdpCounters c;
  MXEDGE_ASSERT_OK(prog_.read_counters(&c));
  ASSERT_EQ(c.per_cpu.size(), possible_cpus());
  uint64_t sum = 0;
  for (unsigned cpu = 0; cpu < cpus; ++cpu) {
    EXPECT_EQ(c.per_cpu[cpu][MXEDGE_CTR_PASS_NOT_SMTP].packets, cpu + 1u) << cpu;
    sum += c.per_cpu[cpu][MXEDGE_CTR_PASS_NOT_SMTP].packets;
  }
  EXPECT_EQ(c.packets(MXEDGE_CTR_PASS_NOT_SMTP), sum);
  EXPECT_EQ(c.total[MXEDGE_CTR_PASS_NOT_SMTP].bytes, sum * frame.size());
  EXPECT_EQ(xdp::counter_name(MXEDGE_CTR_DROP_BLOCKLIST), "drop_blocklist");
  EXPECT_EQ(xdp::counter_name(MXEDGE_CTR_STEERED_WORKER0 + 3), "steered_worker_3");
  MXEDGE_ASSERT_OK(prog_.reset_counters());
  MXEDGE_ASSERT_OK(prog_.read_counters(&c));
  EXPECT_EQ(c.all_packets(), 0u);
}

TEST(XdpLifecycleTest, StepsOutOfOrderAreErrors) {
  xdp::XdpProgram prog;
  EXPECT_EQ(prog.load().err(), EINVAL);
  EXPECT_EQ(prog.attach("lo").err(), EINVAL);
  EXPECT_EQ(prog.add_prefix(xdp::PrefixList::kBlock, "192.0.2.0/24").err(), EINVAL);
  xdp::XdpProgramOptions options;
  options.pin_dir = "";
  MXEDGE_ASSERT_OK(prog.open(options));
  EXPECT_EQ(prog.open(options).err(), EALREADY);
  MXEDGE_ASSERT_OK(prog.load());
  EXPECT_EQ(prog.load().err(), EALREADY);
  EXPECT_EQ(prog.detach("lo").err(), ENOENT);
}

// Attaching, in a network namespace of this process alone.
class XdpAttachTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    static bool done = false;
    if (done) return;
    ASSERT_EQ(unshare(CLONE_NEWNET), 0) << "unshare(CLONE_NEWNET): run as root";
    ASSERT_EQ(std::system("ip link add mxv0 type veth peer name mxv1 && ip link set mxv0 up && ip link set mxv1 up"),
              0);
    done = true;
  }
  void SetUp() override {
    xdp::XdpProgramOptions options;
    options.pin_dir = "";
    MXEDGE_ASSERT_OK(prog_.open(options));
    MXEDGE_ASSERT_OK(prog_.load());
  }
  static uint32_t id_of(int prog_fd) {
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    return bpf_obj_get_info_by_fd(prog_fd, &info, &len) == 0 ? info.id : 0;
  }
  static bpf_xdp_query_opts query(const char* ifname) {
    bpf_xdp_query_opts q{};
    q.sz = sizeof(q);
    EXPECT_EQ(bpf_xdp_query(static_cast<int>(if_nametoindex(ifname)), 0, &q), 0);
    return q;
  }
  // An XDP_PASS program that is not ours ("foreign").
  static int foreign_program() {
    const bpf_insn insns[] = {
        {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, XDP_PASS},
        {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
    };
    return bpf_prog_load(BPF_PROG_TYPE_XDP, "foreign", "GPL", insns, 2, nullptr);
  }
  xdp::XdpProgram prog_;
};

TEST_F(XdpAttachTest, NativeOnVethThenCleanDetach) {
  MXEDGE_ASSERT_OK(prog_.attach("mxv0"));
  ASSERT_EQ(prog_.attachments().size(), 1u);
  EXPECT_TRUE(prog_.attachments()[0].native);
  EXPECT_EQ(query("mxv0").drv_prog_id, id_of(prog_.prog_fd()));
  MXEDGE_ASSERT_OK(prog_.attach("mxv0"));  // idempotent
  MXEDGE_ASSERT_OK(prog_.detach("mxv0"));
  EXPECT_EQ(query("mxv0").prog_id, 0u);
  EXPECT_TRUE(prog_.attachments().empty());
}

TEST_F(XdpAttachTest, GenericFallbackWhereTheDriverHasNoXdp) {
  EXPECT_FALSE(prog_.attach("lo", xdp::AttachMode::kNative).ok());
  MXEDGE_ASSERT_OK(prog_.attach("lo"));  // native fails on loopback; generic, logged
  ASSERT_EQ(prog_.attachments().size(), 1u);
  EXPECT_FALSE(prog_.attachments()[0].native);
  EXPECT_EQ(query("lo").skb_prog_id, id_of(prog_.prog_fd()));
  MXEDGE_ASSERT_OK(prog_.detach_all());
  EXPECT_EQ(query("lo").prog_id, 0u);
}

TEST_F(XdpAttachTest, ForcedGenericModeOnVeth) {
  MXEDGE_ASSERT_OK(prog_.attach("mxv1", xdp::AttachMode::kGeneric));
  EXPECT_EQ(query("mxv1").skb_prog_id, id_of(prog_.prog_fd()));
  EXPECT_EQ(query("mxv1").drv_prog_id, 0u);
}

TEST_F(XdpAttachTest, LeavesForeignProgramsAlone) {
  int foreign = foreign_program();
  ASSERT_GE(foreign, 0);
  const int ifindex = static_cast<int>(if_nametoindex("mxv0"));
  ASSERT_EQ(bpf_xdp_attach(ifindex, foreign, XDP_FLAGS_DRV_MODE, nullptr), 0);
  xdp::Status s = prog_.attach("mxv0");
  EXPECT_EQ(s.err(), EBUSY) << s.to_string();
  EXPECT_NE(s.context().find("foreign"), std::string::npos) << s.to_string();
  EXPECT_EQ(query("mxv0").drv_prog_id, id_of(foreign));
  EXPECT_EQ(bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, nullptr), 0);
  close(foreign);
}

TEST_F(XdpAttachTest, ReplacesAProgramLeftByAnEarlierRun) {
  const int ifindex = static_cast<int>(if_nametoindex("mxv0"));
  uint32_t stale_id = 0;
  for (uint32_t mode : {XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE}) {
    {
      // A crashed run: its program stays attached although its owner is gone.
      xdp::XdpProgram crashed;
      xdp::XdpProgramOptions options;
      options.pin_dir = "";
      MXEDGE_ASSERT_OK(crashed.open(options));
      MXEDGE_ASSERT_OK(crashed.load());
      ASSERT_EQ(bpf_xdp_attach(ifindex, crashed.prog_fd(), mode, nullptr), 0);
      stale_id = id_of(crashed.prog_fd());
    }
    EXPECT_NE(query("mxv0").prog_id, 0u);
    MXEDGE_ASSERT_OK(prog_.attach("mxv0"));  // native; a stale generic one is detached first
    auto q = query("mxv0");
    EXPECT_EQ(q.drv_prog_id, id_of(prog_.prog_fd()));
    EXPECT_EQ(q.skb_prog_id, 0u);
    EXPECT_NE(q.drv_prog_id, stale_id);
    MXEDGE_ASSERT_OK(prog_.detach("mxv0"));
  }
}

TEST_F(XdpAttachTest, DestructorDetaches) {
  {
    xdp::XdpProgram scoped;
    xdp::XdpConfig c = base_config();
    c.interfaces = {"mxv0", "mxv1"};
    MXEDGE_ASSERT_OK(scoped.start(c));
    EXPECT_NE(query("mxv0").prog_id, 0u);
    EXPECT_NE(query("mxv1").prog_id, 0u);
  }
  EXPECT_EQ(query("mxv0").prog_id, 0u);
  EXPECT_EQ(query("mxv1").prog_id, 0u);
}

TEST_F(XdpAttachTest, UnknownInterface) {
  xdp::Status s = prog_.attach("mxnope0");
  EXPECT_EQ(s.err(), ENODEV) << s.to_string();
  EXPECT_NE(s.context().find("mxnope0"), std::string::npos);
}

}  // namespace
}  // namespace mxedge::bpftest
