//! The vector column of an insert log, written as Parquet data pages straight from
//! the Arrow buffer.
//!
//! A required `FixedSizeBinary` column has no repetition or definition levels, and
//! its PLAIN encoding is the values' bytes one after the other: a data page is a
//! page header followed by a slice of the column's buffer. Parquet's column writer
//! copies every value into a buffer of its own, grows it and copies it again into a
//! page; here the pages are the Arrow buffer itself, cut at row boundaries, behind
//! headers from [`page_header`]; a page takes rows from as many of the row
//! group's batches as it needs (one per log message, often small). The row
//! group writer splices the chunk in
//! (`SerializedRowGroupWriter::append_column`), which reads it through
//! `std::io::copy` (one copy, in 8 KiB pieces: the public API has no way to hand it
//! whole pages). The column is what the column writer makes of a column set to
//! PLAIN, uncompressed, no statistics, with an offset index of its pages; the
//! caller cuts only columns whose writer properties say so
//! (`format.rs`, `Leaves`).

use std::collections::VecDeque;
use std::io::Read;

use arrow_array::{Array, FixedSizeBinaryArray};
use bytes::{Buf, Bytes};
use parquet::basic::{Compression, Encoding, PageType};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::reader::{ChunkReader, Length};
use parquet::schema::types::ColumnDescPtr;

/// One encoded column chunk: page headers and page data, in file order.
#[derive(Debug, Clone)]
pub(super) struct VectorChunk {
    pieces: Vec<Bytes>,
    len: u64,
}

impl VectorChunk {
    /// The chunk holding `arrays` one after the other (a row group's slices of
    /// one vector column) in pages of at most `page_bytes` of values (at least
    /// one row), and its close result for the row group writer. `column`
    /// describes the column's leaf in the file's schema.
    pub(super) fn encode(
        column: ColumnDescPtr,
        page_bytes: usize,
        arrays: &[&FixedSizeBinaryArray],
    ) -> Result<(Self, ColumnCloseResult), ParquetError> {
        let value_size = usize::try_from(column.type_length())
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                ParquetError::General(format!(
                    "vector column {:?} has values of {} bytes",
                    column.path().string(),
                    column.type_length()
                ))
            })?;
        let rows_per_page = (page_bytes / value_size).max(1);
        let mut chunk = ChunkBuilder::default();
        let mut page = PageBuilder::default();
        for array in arrays {
            if array.null_count() > 0 {
                return Err(ParquetError::General(format!(
                    "vector column {:?} has nulls; it is required",
                    column.path().string()
                )));
            }
            if usize::try_from(array.value_length()).ok() != Some(value_size) {
                return Err(ParquetError::General(format!(
                    "vector column {:?} holds values of {} bytes, not {value_size}",
                    column.path().string(),
                    array.value_length()
                )));
            }
            // Sliced arrays share their parent's buffer from their first row on.
            let data = Bytes::from_owner(array.values().clone());
            let mut first = 0;
            while first < array.len() {
                // A page takes rows from as many batches as it needs: small
                // batches (one per log message) must not make small pages.
                let n = (rows_per_page - page.rows).min(array.len() - first);
                page.pieces
                    .push(data.slice(first * value_size..(first + n) * value_size));
                page.rows += n;
                first += n;
                if page.rows == rows_per_page {
                    chunk.add(&mut page)?;
                }
            }
        }
        if page.rows > 0 {
            chunk.add(&mut page)?;
        }
        let ChunkBuilder {
            pieces,
            locations,
            len,
            rows,
        } = chunk;
        let pages = i32_of(locations.len())?;
        let metadata = ColumnChunkMetaData::builder(column)
            .set_compression(Compression::UNCOMPRESSED)
            .set_encodings(vec![Encoding::PLAIN, Encoding::RLE])
            .set_page_encoding_stats(vec![PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding: Encoding::PLAIN,
                count: pages,
            }])
            .set_num_values(i64_of(rows)?)
            .set_total_compressed_size(i64_of(len)?)
            .set_total_uncompressed_size(i64_of(len)?)
            .set_data_page_offset(0)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: len,
            rows_written: rows,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(OffsetIndexMetaData {
                page_locations: locations,
                unencoded_byte_array_data_bytes: None,
            }),
        };
        Ok((Self { pieces, len }, close))
    }

    fn reader_at(&self, start: u64) -> Pieces {
        let mut pieces: VecDeque<Bytes> = self.pieces.iter().cloned().collect();
        let mut skip = start;
        while let Some(front) = pieces.front_mut() {
            if skip < front.len() as u64 {
                // Below the front's length, so it fits usize.
                front.advance(skip as usize);
                break;
            }
            skip -= front.len() as u64;
            pieces.pop_front();
        }
        Pieces(pieces)
    }
}

/// The pieces of one data page being gathered, possibly from several arrays.
#[derive(Debug, Default)]
struct PageBuilder {
    pieces: Vec<Bytes>,
    rows: usize,
}

/// The pages written so far and where each starts.
#[derive(Debug, Default)]
struct ChunkBuilder {
    pieces: Vec<Bytes>,
    locations: Vec<PageLocation>,
    len: u64,
    rows: u64,
}

impl ChunkBuilder {
    /// Writes `page` (header, then its pieces) and empties it.
    fn add(&mut self, page: &mut PageBuilder) -> Result<(), ParquetError> {
        let bytes: usize = page.pieces.iter().map(Bytes::len).sum();
        let header = Bytes::from(page_header(page.rows, bytes)?);
        self.locations.push(PageLocation {
            offset: i64_of(self.len)?,
            compressed_page_size: i32_of(header.len() + bytes)?,
            first_row_index: i64_of(self.rows)?,
        });
        self.len += (header.len() + bytes) as u64;
        self.rows += page.rows as u64;
        self.pieces.push(header);
        self.pieces.append(&mut page.pieces);
        page.rows = 0;
        Ok(())
    }
}

impl Length for VectorChunk {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for VectorChunk {
    type T = Pieces;

    fn get_read(&self, start: u64) -> Result<Pieces, ParquetError> {
        Ok(self.reader_at(start))
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        let mut out = Vec::with_capacity(length);
        self.reader_at(start)
            .take(length as u64)
            .read_to_end(&mut out)?;
        if out.len() != length {
            return Err(ParquetError::EOF(format!(
                "{length} bytes from {start} asked of a {}-byte chunk",
                self.len
            )));
        }
        Ok(out.into())
    }
}

/// Reads a chunk's pieces in order.
#[derive(Debug)]
pub(super) struct Pieces(VecDeque<Bytes>);

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(front) = self.0.front_mut() {
            if front.is_empty() {
                self.0.pop_front();
                continue;
            }
            let n = buf.len().min(front.len());
            buf[..n].copy_from_slice(&front[..n]);
            front.advance(n);
            return Ok(n);
        }
        Ok(0)
    }
}

fn i32_of(n: usize) -> Result<i32, ParquetError> {
    i32::try_from(n).map_err(|_| ParquetError::General(format!("{n} does not fit a page")))
}

fn i64_of<T: TryInto<i64> + Copy + std::fmt::Display>(n: T) -> Result<i64, ParquetError> {
    n.try_into()
        .map_err(|_| ParquetError::General(format!("{n} does not fit a column chunk")))
}

/// The Thrift compact encoding of the `PageHeader` of an uncompressed v1 data page
/// of `values` PLAIN values, `bytes` long, with no levels and no statistics
/// (parquet-format's `parquet.thrift`; field ids in comments).
fn page_header(values: usize, bytes: usize) -> Result<Vec<u8>, ParquetError> {
    /// A field of type i32 whose id is one more than the previous field's.
    const NEXT_I32: u8 = 0x15;
    /// A struct-typed field two ids after the previous one.
    const STRUCT_PLUS_2: u8 = 0x2C;
    const STOP: u8 = 0;
    let size = i32_of(bytes)?;
    let mut h = Vec::with_capacity(24);
    h.push(NEXT_I32); // 1: type
    varint(&mut h, PageType::DATA_PAGE as i32);
    h.push(NEXT_I32); // 2: uncompressed_page_size
    varint(&mut h, size);
    h.push(NEXT_I32); // 3: compressed_page_size
    varint(&mut h, size);
    h.push(STRUCT_PLUS_2); // 5: data_page_header
    h.push(NEXT_I32); // 1: num_values
    varint(&mut h, i32_of(values)?);
    h.push(NEXT_I32); // 2: encoding
    varint(&mut h, Encoding::PLAIN as i32);
    h.push(NEXT_I32); // 3: definition_level_encoding
    varint(&mut h, Encoding::RLE as i32);
    h.push(NEXT_I32); // 4: repetition_level_encoding
    varint(&mut h, Encoding::RLE as i32);
    h.push(STOP); // end of DataPageHeader
    h.push(STOP); // end of PageHeader
    Ok(h)
}

/// A zigzag varint, as the compact protocol writes an i32.
fn varint(out: &mut Vec<u8>, n: i32) {
    let mut v = ((n << 1) ^ (n >> 31)) as u32;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_zigzag_leb128() {
        let enc = |n| {
            let mut v = Vec::new();
            varint(&mut v, n);
            v
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(-1), [1]);
        assert_eq!(enc(1), [2]);
        assert_eq!(enc(3), [6]);
        assert_eq!(enc(64), [0x80, 0x01]);
        assert_eq!(enc(1 << 20), [0x80, 0x80, 0x80, 0x01]);
        assert_eq!(enc(i32::MAX), [0xFE, 0xFF, 0xFF, 0xFF, 0x0F]);
    }

    #[test]
    fn a_reader_starts_anywhere_and_reads_the_pieces_in_order() {
        let chunk = VectorChunk {
            pieces: vec![
                Bytes::from_static(b"ab"),
                Bytes::new(),
                Bytes::from_static(b"cde"),
            ],
            len: 5,
        };
        let mut all = Vec::new();
        chunk
            .get_read(0)
            .expect("read")
            .read_to_end(&mut all)
            .expect("read");
        assert_eq!(all, b"abcde");
        assert_eq!(
            chunk.get_bytes(1, 3).expect("bytes"),
            Bytes::from_static(b"bcd")
        );
        assert_eq!(chunk.get_bytes(5, 0).expect("bytes"), Bytes::new());
        assert!(chunk.get_bytes(3, 3).is_err());
    }
}
