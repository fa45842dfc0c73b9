#!/usr/bin/perl
# hutil.pl - the harness helpers called in loops (perl-base only: starts in ~10 ms where
# python3 takes 100-600 ms on a loaded 2-core machine; tests call these hundreds of times).
#
#   hutil.pl free-port ADDR RESERVED_FILE [N]
#                                           print N (default 1) TCP ports free on ADDR (IPv4), in
#                                           20000-32000, not yet in RESERVED_FILE nor handed to
#                                           another test in the last hour (each chosen port is
#                                           appended to both), one a line, under one lock
#   hutil.pl unix-cmd PATH CMD [TIMEOUT]    send CMD + "\n" to a unix stream socket, shut the
#                                           write side, print everything read until EOF (haproxy
#                                           admin and master CLI); exit 1 on a socket error
#
# Same files and formats as hutil.py's former free-port: the machine-wide file
# (REGENT_PORTS_FILE, default /tmp/regent-test-ports) holds "PORT EPOCH" lines, so test
# entries run side by side (ctest -j) never pick the same port between choosing and binding it.
use strict;
use warnings;
use Fcntl qw(:flock SEEK_SET);
use Socket qw(AF_INET AF_UNIX SOCK_STREAM SOL_SOCKET SO_RCVTIMEO SO_SNDTIMEO inet_aton
              pack_sockaddr_in pack_sockaddr_un SHUT_WR);
use IO::Handle;

my $SHARED_FILE = $ENV{REGENT_PORTS_FILE} || "/tmp/regent-test-ports";
my $SHARED_TTL = 3600;

sub free_port {
    my ($addr, $reserved_file, $want) = @_;
    $want = 1 unless defined $want;
    die "free-port: bad count $want\n" unless $want =~ /^\d+$/ && $want >= 1 && $want <= 4000;
    my $ip = inet_aton($addr) or die "free-port: bad address $addr\n";
    open(my $f, "+>>", $reserved_file) or die "free-port: $reserved_file: $!\n";
    open(my $g, "+>>", $SHARED_FILE) or die "free-port: $SHARED_FILE: $!\n";
    flock($f, LOCK_EX) or die "free-port: lock $reserved_file: $!\n";
    flock($g, LOCK_EX) or die "free-port: lock $SHARED_FILE: $!\n";
    seek($f, 0, SEEK_SET);
    my %reserved;
    while (my $l = <$f>) { $l =~ s/\s+//g; $reserved{$l} = 1 if length $l; }
    my $now = time();
    seek($g, 0, SEEK_SET);
    my (%shared, @order);
    while (my $l = <$g>) {
        my @p = split ' ', $l;
        next unless @p == 2 && $p[0] =~ /^\d+$/ && $p[1] =~ /^\d+$/ && $now - $p[1] < $SHARED_TTL;
        push @order, $p[0] unless exists $shared{$p[0]};
        $shared{$p[0]} = $p[1];
    }
    my @got;
    for (1 .. 2000 * $want) {
        last if @got == $want;
        my $port = 20000 + int(rand(12001));
        next if $reserved{$port} || exists $shared{$port};
        socket(my $s, AF_INET, SOCK_STREAM, 0) or die "free-port: socket: $!\n";
        my $ok = bind($s, pack_sockaddr_in($port, $ip));
        close($s);
        next unless $ok;
        push @got, $port;
        push @order, $port;
        $shared{$port} = $now;
    }
    if (@got) {
        print $f map { "$_\n" } @got;
        $f->flush();
        # rewrite the shared file in place (the lock is on it): without the stale entries
        truncate($g, 0) or die "free-port: truncate $SHARED_FILE: $!\n";
        seek($g, 0, SEEK_SET);
        print $g map { "$_ $shared{$_}\n" } @order;
        $g->flush();
    }
    if (@got < $want) {
        print STDERR "free-port: only " . scalar(@got) . " of $want free ports found on $addr\n";
        return 1;
    }
    print map { "$_\n" } @got;
    return 0;
}

sub unix_cmd {
    my ($path, $cmd, $timeout) = @_;
    $timeout = 10 unless defined $timeout && $timeout > 0;
    my $tv = pack("l!l!", int($timeout), int(($timeout - int($timeout)) * 1e6));
    my $s;
    my $ok = socket($s, AF_UNIX, SOCK_STREAM, 0)
        && setsockopt($s, SOL_SOCKET, SO_RCVTIMEO, $tv) && setsockopt($s, SOL_SOCKET, SO_SNDTIMEO, $tv)
        && connect($s, pack_sockaddr_un($path));
    if (!$ok) { print STDERR "unix-cmd $path: $!\n"; return 1; }
    my $msg = "$cmd\n";
    while (length $msg) {
        my $n = syswrite($s, $msg);
        if (!defined $n) { print STDERR "unix-cmd $path: $!\n"; return 1; }
        substr($msg, 0, $n) = "";
    }
    shutdown($s, SHUT_WR);
    my $out = "";
    while (1) {
        my $n = sysread($s, my $buf, 65536);
        if (!defined $n) {
            my $why = $!{EAGAIN} ? "no answer (EOF) within $timeout s" : "$!";
            print STDERR "unix-cmd $path: $why\n";
            return 1;
        }
        last if $n == 0;
        $out .= $buf;
    }
    close($s);
    print $out;
    return 0;
}

my $op = shift(@ARGV) // "";
if ($op eq "free-port" && (@ARGV == 2 || @ARGV == 3)) { exit free_port(@ARGV); }
if ($op eq "unix-cmd" && (@ARGV == 2 || @ARGV == 3)) { exit unix_cmd(@ARGV); }
print STDERR "usage: hutil.pl free-port ADDR RESERVED_FILE [N] | unix-cmd PATH CMD [TIMEOUT]\n";
exit 2;
