// Unit tests for SMTP command-line parsing (dataplane/smtp/smtp_command.h).
#include "dataplane/smtp/smtp_command.h"

#include <gtest/gtest.h>

namespace mxedge::smtp {
namespace {

TEST(ParseCommand, VerbsAreCaseInsensitiveAndArgsTrimmed) {
  Command c = parse_command("mail FROM:<a@b.test>  ");
  EXPECT_EQ(c.verb, Verb::kMail);
  EXPECT_EQ(c.args, "FROM:<a@b.test>");
  EXPECT_EQ(parse_command("EhLo client.test").verb, Verb::kEhlo);
  EXPECT_EQ(parse_command("STARTTLS").verb, Verb::kStarttls);
  EXPECT_EQ(parse_command("STARTTLS").args, "");
  EXPECT_EQ(parse_command("MAILX FROM:<>").verb, Verb::kUnknown);
  EXPECT_EQ(parse_command("").verb, Verb::kUnknown);
  EXPECT_EQ(parse_command("VRFY root").verb, Verb::kVrfy);
}

TEST(ParseMailFrom, NullPathAndParameters) {
  auto r = parse_mail_from("FROM:<> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=abc+2Bdef");
  ASSERT_EQ(r.path_error, PathError::kNone);
  ASSERT_EQ(r.param_error, ParamError::kNone);
  EXPECT_TRUE(r.args.sender.null_path);
  EXPECT_EQ(r.args.sender.address(), "");
  EXPECT_EQ(*r.args.size, 1000u);
  EXPECT_EQ(r.args.body, BodyParam::k8BitMime);
  EXPECT_EQ(r.args.ret, RetParam::kHdrs);
  EXPECT_EQ(r.args.envid, "abc+2Bdef");
}

TEST(ParseMailFrom, SpaceAfterColonIsTolerated) {
  auto r = parse_mail_from("FROM: <user@example.test>");
  ASSERT_EQ(r.path_error, PathError::kNone);
  EXPECT_EQ(r.args.sender.address(), "user@example.test");
}

TEST(ParseMailFrom, Rejections) {
  EXPECT_EQ(parse_mail_from("FROM:user@example.test").path_error, PathError::kSyntax);  // no brackets
  EXPECT_EQ(parse_mail_from("FROM:<user@>").path_error, PathError::kSyntax);
  EXPECT_EQ(parse_mail_from("FROM:<@example.test>").path_error, PathError::kSyntax);
  EXPECT_EQ(parse_mail_from("FROM:<a..b@example.test>").path_error, PathError::kSyntax);
  EXPECT_EQ(parse_mail_from("FROM:<a@example..test>").path_error, PathError::kSyntax);
  EXPECT_EQ(parse_mail_from("FROM:<a@-x.test>").path_error, PathError::kSyntax);
  EXPECT_EQ(parse_mail_from("FROM:<a@x.test.>").path_error, PathError::kSyntax);
  EXPECT_EQ(parse_mail_from("TO:<a@x.test>").path_error, PathError::kSyntax);
  EXPECT_EQ(parse_mail_from("FROM:<Postmaster>").path_error, PathError::kSyntax);
  EXPECT_EQ(parse_mail_from(std::string("FROM:<") + std::string(65, 'a') + "@x.test>").path_error, PathError::kTooLong);
  EXPECT_EQ(parse_mail_from("FROM:<a@x.test> SIZE=abc").param_error, ParamError::kSyntax);
  EXPECT_EQ(parse_mail_from("FROM:<a@x.test> SIZE=1 SIZE=2").param_error, ParamError::kDuplicate);
  EXPECT_EQ(parse_mail_from("FROM:<a@x.test> BODY=BINARYMIME").param_error, ParamError::kUnsupported);
  EXPECT_EQ(parse_mail_from("FROM:<a@x.test> AUTH=<>").param_error, ParamError::kUnsupported);
  EXPECT_EQ(parse_mail_from("FROM:<a@x.test> SMTPUTF8=yes").param_error, ParamError::kSyntax);
  EXPECT_EQ(parse_mail_from("FROM:<a@x.test> ENVID=a=b").param_error, ParamError::kSyntax);
  EXPECT_EQ(parse_mail_from("FROM:<a@x.test> ENVID=+4").param_error, ParamError::kSyntax);
  EXPECT_EQ(parse_mail_from("FROM:<a@x.test>SIZE=1").param_error, ParamError::kSyntax);
}

TEST(ParsePath, QuotedLocalPartAndLiterals) {
  Mailbox m;
  PathError e;
  ASSERT_GT(parse_path("<\"john doe\"@example.test>", m, e), 0u);
  EXPECT_TRUE(m.quoted_local);
  EXPECT_EQ(m.local_part, "\"john doe\"");

  Mailbox lit;
  ASSERT_GT(parse_path("<u@[192.0.2.1]>", lit, e), 0u);
  EXPECT_TRUE(lit.address_literal);
  EXPECT_EQ(lit.domain, "[192.0.2.1]");

  Mailbox v6;
  ASSERT_GT(parse_path("<u@[IPv6:2001:db8::1]>", v6, e), 0u);
  EXPECT_TRUE(v6.address_literal);

  Mailbox bad;
  EXPECT_EQ(parse_path("<u@[300.1.1.1]>", bad, e), 0u);
  Mailbox route;
  ASSERT_GT(parse_path("<@relay.test,@b.test:u@c.test>", route, e), 0u);
  EXPECT_TRUE(route.source_route);
  EXPECT_EQ(route.address(), "u@c.test");
}

TEST(ParsePath, Utf8IsFlaggedAndMustBeWellFormed) {
  Mailbox m;
  PathError e;
  ASSERT_GT(parse_path("<j\xc3\xb6rg@b\xc3\xbc" "cher.test>", m, e), 0u);
  EXPECT_TRUE(m.non_ascii);
  Mailbox bad;
  EXPECT_EQ(parse_path("<j\xc3rg@example.test>", bad, e), 0u);      // truncated sequence
  EXPECT_EQ(parse_path("<j\xc0\xafrg@example.test>", bad, e), 0u);  // overlong
}

TEST(ParseRcptTo, DsnParameters) {
  auto r = parse_rcpt_to("TO:<u@example.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;u+40example.test");
  ASSERT_EQ(r.param_error, ParamError::kNone);
  EXPECT_EQ(r.args.notify, kNotifySuccess | kNotifyDelay);
  EXPECT_EQ(r.args.orcpt, "rfc822;u+40example.test");
  EXPECT_EQ(parse_rcpt_to("TO:<u@x.test> NOTIFY=NEVER,SUCCESS").param_error, ParamError::kSyntax);
  EXPECT_EQ(parse_rcpt_to("TO:<u@x.test> NOTIFY=SOMETIMES").param_error, ParamError::kSyntax);
  EXPECT_EQ(parse_rcpt_to("TO:<u@x.test> NOTIFY=FAILURE,FAILURE").param_error, ParamError::kSyntax);
  EXPECT_EQ(parse_rcpt_to("TO:<u@x.test> ORCPT=nosemicolon").param_error, ParamError::kSyntax);
  EXPECT_EQ(parse_rcpt_to("TO:<>").path_error, PathError::kSyntax);
  auto pm = parse_rcpt_to("TO:<Postmaster>");
  ASSERT_EQ(pm.path_error, PathError::kNone);
  EXPECT_TRUE(pm.args.recipient.postmaster);
  EXPECT_TRUE(pm.args.recipient.domain.empty());
}

TEST(ParseBdat, SizeAndLast) {
  auto b = parse_bdat("1234 LAST");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->size, 1234u);
  EXPECT_TRUE(b->last);
  EXPECT_FALSE(parse_bdat("12x"));
  EXPECT_FALSE(parse_bdat(""));
  EXPECT_FALSE(parse_bdat("10 FIRST"));
  EXPECT_FALSE(parse_bdat("-1"));
  EXPECT_FALSE(parse_bdat("123456789012345678901"));
  EXPECT_TRUE(parse_bdat("0 last"));
}

TEST(Xtext, Validation) {
  EXPECT_TRUE(is_xtext("abc+2B+3D"));
  EXPECT_FALSE(is_xtext("a+2"));
  EXPECT_FALSE(is_xtext("a+2b"));  // hex must be upper case
  EXPECT_FALSE(is_xtext("a b"));
  EXPECT_FALSE(is_xtext("a=b"));
}

}  // namespace
}  // namespace mxedge::smtp
