#!/usr/bin/perl
# A scripted SMSC on Debian's Net::SMPP (libnet-smpp-perl), for loopback tests.
#
#   perl smsc_netsmpp.pl PORT MODE
#
# One connection at a time. It binds anything, answers enquire_link, accepts submit_sm (message
# id "ns<n>") and answers unbind, then waits for the next connection. It prints one JSON object a
# line on stdout: {"event":"listening"}, then "bound", and "pdu" for every PDU it reads (command
# name and id, status, sequence) and "sent" for what it sends on its own.
#
# MODE, what it does once bound:
#   plain     nothing more
#   enquire   sends enquire_link
#   garbled   sends a request of an unknown command id (0x00000999), then a deliver_sm whose
#             body is cut short (both should come back as generic_nack)
#   silent    answers nothing after the bind (not even enquire_link)
#   unbind    sends unbind, and closes once unbind_resp came
#   dlr       sends a text delivery receipt (DELIVRD) for every submit_sm it answers
use strict;
use warnings;
use Net::SMPP;
use JSON::PP;

$| = 1;
my ($port, $mode) = @ARGV;
$mode ||= 'plain';
my $json = JSON::PP->new->canonical;

sub say_json { print $json->encode({@_}), "\n"; }

my $listener = Net::SMPP->new_listen('127.0.0.1', port => $port, smpp_version => 0x34)
    or die "cannot listen on 127.0.0.1:$port: $!";
say_json(event => 'listening', port => $port + 0);

my $ids = 0;
while (my $conn = $listener->accept) {
    my $bound = 0;
    while (my $pdu = $conn->read_pdu) {
        my $name = $pdu->explain_cmd;
        say_json(event => 'pdu', command => $name, command_id => $pdu->{cmd},
                 status => $pdu->{status}, seq => $pdu->{seq});
        next if $bound && $mode eq 'silent';
        if ($name =~ /^bind_(transceiver|transmitter|receiver)$/) {
            my $answer = "${name}_resp";
            $conn->$answer(seq => $pdu->{seq}, system_id => 'NETSMPP');
            $bound = 1;
            say_json(event => 'bound', system_id => $pdu->{system_id}, bind => $1);
            after_bind($conn);
        } elsif ($name eq 'enquire_link') {
            $conn->enquire_link_resp(seq => $pdu->{seq});
        } elsif ($name eq 'submit_sm') {
            $ids++;
            $conn->submit_sm_resp(seq => $pdu->{seq}, message_id => "ns$ids");
            if ($mode eq 'dlr') {
                # A delivery receipt in the text format of SMPP 3.4 appendix B.
                my $text = "id:ns$ids sub:001 dlvrd:001 submit date:2601011200 "
                    . "done date:2601011200 stat:DELIVRD err:000 text:";
                my $seq = $conn->deliver_sm(
                    source_addr => $pdu->{destination_addr},
                    destination_addr => $pdu->{source_addr},
                    esm_class => 0x04,
                    short_message => $text,
                    async => 1,
                );
                say_json(event => 'sent', command => 'deliver_sm', seq => $seq, id => "ns$ids");
            }
        } elsif ($name eq 'unbind') {
            $conn->unbind_resp(seq => $pdu->{seq});
            last;
        } elsif ($name eq 'unbind_resp' && $mode eq 'unbind') {
            last;
        }
    }
    say_json(event => 'closed');
    close $conn;
}

sub after_bind {
    my ($conn) = @_;
    if ($mode eq 'enquire') {
        my $seq = $conn->enquire_link(async => 1);
        say_json(event => 'sent', command => 'enquire_link', seq => $seq);
    } elsif ($mode eq 'garbled') {
        # An unknown command id, with a well-formed header.
        $conn->syswrite(pack('NNNN', 16 + 2, 0x00000999, 0, 900) . "xx");
        say_json(event => 'sent', command => 'unknown', seq => 900);
        # A deliver_sm whose body stops in the middle of source_addr (no NUL).
        $conn->syswrite(pack('NNNN', 16 + 5, 0x00000005, 0, 901) . "\0\1\1" . "33");
        say_json(event => 'sent', command => 'garbled_deliver_sm', seq => 901);
    } elsif ($mode eq 'unbind') {
        my $seq = $conn->unbind(async => 1);
        say_json(event => 'sent', command => 'unbind', seq => $seq);
    }
}
