/*
 * schemas.h - the Avro schemas of schemas/ (the data of each event type
 * orderflow writes in Avro), compiled in by the Makefile as strings: the
 * files stay the one source, and a command needs no file at run time.
 */
#ifndef OF_SCHEMAS_H
#define OF_SCHEMAS_H

extern const char schema_order_created_v1[];
extern const char schema_order_created_v2[];
extern const char schema_payment_processed_v1[];

#endif
